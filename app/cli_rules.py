"""`livewatch rules ...` and `livewatch eval`: tools for the people who tune rule packs.

- ``rules check [DIR]``: validate every pack; on errors print ``file:line: field: reason`` lines to
  stderr and exit 2.
- ``rules test [DIR]``: run every rule's phrase table and the packs' clean lines; failures as a table,
  exit 1 when any.
- ``rules explain TEXT``: normalization steps, pinyin, and which rules fire or are silenced, with scores.
- ``eval LABELS...``: precision/recall per category and per rule on labelled texts (JSON lines or a
  broadcast JSON with spans); with ``--transcript`` the rules run on an ASR transcript and are scored
  against the spans' times (as ``tools/score.py`` does).

DIR defaults to the shipped packs (configs/rules); ``--rules DIR`` (repeatable) layers a site's
directories on top, so a site's overrides are checked against the packs they change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from asr.types import Utterance
    from detectors.types import Detection

__all__ = ["eval_command", "rules_app"]

rules_app = typer.Typer(
    name="rules",
    help="Validate, test and explain rule packs (configs/rules/*.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DirArg = Annotated[
    Path | None,
    typer.Argument(help="Rules directory (default: the shipped packs, configs/rules).", show_default=False),
]
RulesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules", "-r", help="Further rules directory layered on top (repeatable; a site's overrides)."
    ),
]


def _dirs(base: Path | None, extra: list[Path] | None) -> list[Path]:
    from detectors.config import DEFAULT_RULES_DIR  # here, not at the top: `--help` starts fast

    return [base or DEFAULT_RULES_DIR, *(extra or [])]


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _load(dirs: list[Path]):  # type: ignore[no-untyped-def]
    from detectors.engine import RuleSet
    from detectors.rules import RulePackError

    try:
        return RuleSet.load(dirs)
    except RulePackError as e:
        Console(stderr=True, highlight=False).print(str(e), markup=False)
        raise typer.Exit(2) from None


@rules_app.command("check")
def check_command(directory: DirArg = None, rules: RulesOpt = None) -> None:
    """Validate every pack; print file:line: field: reason for each error and exit 2 if any."""
    from detectors.rules import collect_errors

    dirs = _dirs(directory, rules)
    errors = collect_errors(dirs)
    if errors:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for e in errors:
            err.print(str(e), markup=False)
        raise typer.Exit(2)
    rs = _load(dirs)
    t = Table(title=f"rule packs: {len(rs.files)} files, version {rs.version}")
    for col in ("file", "rules", "enabled", "phrases", "categories"):
        t.add_column(col)
    by_file: dict[Path, list] = {}
    for r in rs.rules:
        by_file.setdefault(r.path, []).append(r)
    clean_by_file: dict[Path, int] = {}
    for c in rs.clean:
        clean_by_file[c.path] = clean_by_file.get(c.path, 0) + 1
    for f in rs.files:
        rules_here = by_file.get(f, [])
        phrases = sum(len(r.should_flag) + len(r.should_not_flag) for r in rules_here) + clean_by_file.get(
            f, 0
        )
        t.add_row(
            f"{f.parent.name}/{f.name}",
            str(len(rules_here)),
            str(sum(r.enabled for r in rules_here)),
            str(phrases),
            ", ".join(sorted({r.category for r in rules_here})),
        )
    _out().print(t)
    _out().print(
        f"ok: {len(rs.rules)} rules ({sum(r.enabled for r in rs.rules)} enabled), version {rs.version}"
    )


@rules_app.command("test")
def test_command(directory: DirArg = None, rules: RulesOpt = None) -> None:
    """Run every rule's phrase table (should_flag / should_not_flag) and the packs' clean lines."""
    from detectors.evaluate import run_phrase_tables

    rs = _load(_dirs(directory, rules))
    count, failures = run_phrase_tables(rs)
    out = _out()
    if failures:
        t = Table(title=f"{len(failures)} phrase-table failures")
        for col in ("rule", "expected", "phrase", "got", "where"):
            t.add_column(col, overflow="fold")
        for f in failures:
            expected = {"should_flag": "flag", "should_not_flag": "no flag", "clean": "no rule"}[f.kind]
            t.add_row(f.rule_id or "(any)", expected, f.phrase, "; ".join(f.got) or "-", f"{f.path}:{f.line}")
        out.print(t)
    out.print(
        f"{count - len(failures)} passed, {len(failures)} failed "
        f"({sum(r.enabled for r in rs.rules)} rules, version {rs.version})"
    )
    if failures:
        raise typer.Exit(1)


@rules_app.command("explain")
def explain_command(
    text: Annotated[str, typer.Argument(help="The utterance to explain.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Rules directory (default: shipped packs).")
    ] = None,
    rules: RulesOpt = None,
) -> None:
    """Show normalization steps, pinyin, and which rules fire or are silenced, with scores."""
    rs = _load(_dirs(directory, rules))
    ex = rs.explain(text)
    out = _out()
    steps = Table(title="normalization", show_header=True)
    steps.add_column("step")
    steps.add_column("text", overflow="fold")
    for name, value in ex.steps:
        steps.add_row(name, value)
    steps.add_row("pinyin", ex.pinyin)
    out.print(steps)
    for title, rows in (("fires", ex.hits), ("silenced", ex.exempted)):
        t = Table(title=f"{title}: {len(rows)}")
        for col in ("rule", "category", "code", "severity", "matched", "score", "mode", "pattern", "reason"):
            t.add_column(col, overflow="fold")
        for h in rows:
            t.add_row(
                h.rule_id,
                h.category,
                h.code,
                h.severity,
                h.matched,
                f"{h.score:.1f}",
                h.mode,
                h.pattern,
                h.reason,
            )
        out.print(t)
    out.print(f"rules version {ex.version}")


def eval_command(
    labels: Annotated[
        list[Path] | None,
        typer.Argument(help="Labelled data: JSON lines (id, text, labels) or broadcast JSON (spans)."),
    ] = None,
    rules_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules", "-r", help="Rules directories layered in order (default: the shipped packs)."
        ),
    ] = None,
    transcript: Annotated[
        list[Path] | None,
        typer.Option(
            "--transcript",
            "-t",
            help="ASR transcript JSON for the broadcast JSON at the same position "
            "in LABELS: score detections on it by time instead of the clean text (repeatable).",
        ),
    ] = None,
    overlays: Annotated[
        bool, typer.Option("--overlays", help="Also evaluate a broadcast's on-screen captions.")
    ] = False,
    phrase_tables: Annotated[
        bool,
        typer.Option(
            "--phrase-tables", help="Also score the rule packs' phrase tables (split like the rest)."
        ),
    ] = False,
    half: Annotated[
        str,
        typer.Option(
            "--half",
            help="tune, test or both: which half of the fixed split (hash of each line's id) to report. "
            "Missed lines and false alarms are listed for the tune half only.",
        ),
    ] = "both",
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the per-half summary (per category figures) as JSON."),
    ] = None,
    alerts_out: Annotated[
        Path | None,
        typer.Option("--alerts-out", help="Write the detections as alerts JSON lines (for tools/score.py)."),
    ] = None,
    slack: Annotated[
        float, typer.Option("--slack", help="Seconds of slack around a span (transcripts).")
    ] = 2.0,
    min_precision: Annotated[
        float, typer.Option("--min-precision", help="Exit 1 below this precision (on every half reported).")
    ] = 0.0,
    min_recall: Annotated[
        float, typer.Option("--min-recall", help="Exit 1 below this recall (on every half reported).")
    ] = 0.0,
    semantic: Annotated[
        bool,
        typer.Option(
            "--semantic/--rules-only",
            help="Run the semantic stage (e5 + trained head) behind the rules, as scan and monitor do by "
            "default; --rules-only scores the rule packs alone.",
        ),
    ] = True,
    semantic_head: Annotated[
        Path | None, typer.Option("--semantic-head", help="Head for --semantic (default configs/semantic/head.npz).")
    ] = None,
    price: Annotated[
        bool,
        typer.Option(
            "--price/--no-price",
            help="Run the single-line price checks (configs/price.yaml: implausible discount, unsupported "
            "reference) as scan and monitor do; the checks that need a stream's history cannot run on "
            "lone lines.",
        ),
    ] = True,
) -> None:
    """Precision and recall per category and per rule, on the tune and test halves separately.

    Every labelled line belongs to a fixed half by a hash of its id (detectors/split.py). Rules are
    written from the tune half; the test half is only scored, so its lines are never printed.
    """
    from detectors.evaluate import (
        EvalReport,
        evaluate_items,
        evaluate_transcript,
        load_labelled,
        load_transcript,
        phrase_items,
    )

    if half not in ("tune", "test", "both"):
        Console(stderr=True).print(f"eval: --half must be tune, test or both, not {half!r}")
        raise typer.Exit(2)
    halves: list[str] = ["tune", "test"] if half == "both" else [half]
    dirs = list(rules_dir) if rules_dir else _dirs(None, None)
    rs = _load(dirs)
    sem_extra = _semantic_extra(semantic, semantic_head, rs.version)
    extra = (*sem_extra, *_price_extra(price))
    paths = list(labels or [])
    if not paths and not phrase_tables:
        Console(stderr=True).print("eval: give LABELS files and/or --phrase-tables")
        raise typer.Exit(2)
    transcripts = list(transcript or [])
    if len(transcripts) > len(paths):
        Console(stderr=True).print("eval: more --transcript files than LABELS")
        raise typer.Exit(2)
    totals = {h: EvalReport() for h in halves}
    for i, path in enumerate(paths):
        if not path.is_file():
            Console(stderr=True).print(f"{path}: no such file")
            raise typer.Exit(2)
        try:
            if i < len(transcripts):
                utts = load_transcript(transcripts[i])
                for h in halves:
                    totals[h].merge(evaluate_transcript(rs, utts, path, slack_s=slack, half=h, extra=extra))  # type: ignore[arg-type]
            else:
                items = load_labelled(path, overlays=overlays)
                for h in halves:
                    totals[h].merge(evaluate_items(rs, [it for it in items if it.half == h], extra=extra))
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            Console(stderr=True).print(f"{path}: cannot read labelled data: {e!r}")
            raise typer.Exit(2) from None
    if phrase_tables:
        # the packs' own unit tests: scored on what the rules (and the semantic stage) say, not the
        # price checks, which judge structured claims by their own configuration
        items = phrase_items(rs)
        for h in halves:
            totals[h].merge(evaluate_items(rs, [it for it in items if it.half == h], extra=sem_extra))
    summary: dict[str, object] = {"rules_version": rs.version}
    failed = False
    for h in halves:
        rep = totals[h]
        _print_report(rep, title=h, lines=h == "tune")
        alarm = f" clean_alarmed={rep.clean_alarmed}/{rep.clean_lines}" if rep.clean_lines else ""
        print(
            f"[{h}] recall={rep.recall:.3f} precision={rep.precision:.3f}{alarm} rules_version={rs.version}"
        )
        summary[h] = rep.summary()
        failed = failed or rep.precision < min_precision or rep.recall < min_recall
    if len(halves) > 1:
        both = EvalReport()
        for h in halves:
            both.merge(totals[h])
        summary["all"] = both.summary()
        print(
            f"recall={both.recall:.3f} precision={both.precision:.3f} (both halves) rules_version={rs.version}"
        )
    sys.stdout.flush()
    if json_out is not None:
        json_out.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    if alerts_out is not None:
        with open(alerts_out, "w", encoding="utf-8") as f:
            for h in halves:
                for a in totals[h].alerts:
                    f.write(json.dumps(a, ensure_ascii=False) + "\n")
    if failed:
        raise typer.Exit(1)


def _price_extra(enabled: bool):  # type: ignore[no-untyped-def]
    """The price checks that judge one claim alone (no history), as an extra detector, or nothing."""
    if not enabled:
        return ()
    from detectors.price import PriceChecker, extract_from_utterance
    from detectors.price_config import load_price_config

    checker = PriceChecker(load_price_config(), None)

    def detect(utt: Utterance) -> list[Detection]:
        out: list[Detection] = []
        for claim in extract_from_utterance(utt):
            out += checker.check(claim, stream_id=None, claim_ts=None, utterance=utt)
        return out

    return (detect,)


def _semantic_extra(enabled: bool, head: Path | None, rules_version: str):  # type: ignore[no-untyped-def]
    """The semantic stage as an extra detector for `evaluate_items`, or nothing."""
    if not enabled:
        return ()
    from detectors.config import SemanticConfig
    from detectors.semantic import SemanticDetector

    cfg = SemanticConfig(enabled=True, **({"head": head} if head else {}))
    det = SemanticDetector(cfg)
    print(f"semantic stage: head {det.head.hash[:12]}, version {rules_version}+{det.version_tag}")
    return (det.detect_utterance,)


def _print_report(rep, title: str = "", lines: bool = True) -> None:  # type: ignore[no-untyped-def]
    out = _out()
    pre = f"{title}: " if title else ""
    t = Table(title=f"{pre}per category")
    for col in ("category", "tp", "fn", "fp", "recall", "precision"):
        t.add_column(col, justify="right" if col != "category" else "left")
    for c in rep.categories():
        tp, fn, fp = rep.tp[c], rep.fn[c], rep.fp[c]
        t.add_row(
            c,
            str(tp),
            str(fn),
            str(fp),
            f"{tp / (tp + fn):.3f}" if tp + fn else "-",
            f"{tp / (tp + fp):.3f}" if tp + fp else "-",
        )
    out.print(t)
    r = Table(title=f"{pre}per rule")
    for col in ("rule", "hits", "right", "wrong", "precision"):
        r.add_column(col, justify="right" if col != "rule" else "left")
    for rid in sorted(rep.rule_hits):
        hits, right = rep.rule_hits[rid], rep.rule_right[rid]
        r.add_row(rid, str(hits), str(right), str(hits - right), f"{right / hits:.3f}")
    out.print(r)
    if not lines:
        out.print(f"{pre}{len(rep.misses)} missed, {len(rep.false_alarms)} false alarms (lines not shown)")
        return
    if rep.misses:
        m = Table(title=f"{pre}missed")
        for col in ("where", "category", "text"):
            m.add_column(col, overflow="fold")
        for row in rep.misses:
            m.add_row(*row)
        out.print(m)
    if rep.false_alarms:
        f = Table(title=f"{pre}false alarms")
        for col in ("where", "rule", "matched", "text"):
            f.add_column(col, overflow="fold")
        for row in rep.false_alarms:
            f.add_row(*row)
        out.print(f)
