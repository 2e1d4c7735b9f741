"""The `livewatch` command line.

Alerts go to stdout as JSON lines (one object per alert); progress, tables and errors go to stderr, so
`livewatch scan x.mp4 > alerts.jsonl` keeps a clean ledger. Bad input exits with code 2 and one line
naming the file (and line/field for configs), with no traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from app import __version__
from app.errors import UsageError

app = typer.Typer(
    name="livewatch",
    help="Monitor Chinese live-commerce broadcasts: transcribe, read the screen, raise alerts with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
logger = logging.getLogger("livewatch")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Root config YAML.", exists=False)]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default $LIVEWATCH_DATA_DIR or ./livewatch-data).")
]


def parse_time(value: str | None) -> float | None:
    """ISO 8601 (with or without zone; no zone means UTC) or epoch seconds → epoch seconds."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--started-at: '{value}' is not an ISO 8601 time or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def open_store(config: Path | None, data_dir: Path | None) -> tuple[Any, Any, Path]:
    from app.config import load_config
    from store.db import Database

    cfg = load_config(config)
    ddir = cfg.resolved_data_dir(data_dir)
    return cfg, Database.for_data_dir(ddir, cfg.db_url), ddir


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Media files (mp4, ts, flv, mkv, m4a, wav, flac, ...).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    stream: Annotated[str | None, typer.Option("--stream", help="Attribute the recording to this stream id.")] = None,
    started_at: Annotated[
        str | None, typer.Option("--started-at", help="Wall-clock start of the recording (ISO 8601 or epoch).")
    ] = None,
    video: Annotated[bool | None, typer.Option("--video/--no-video", help="Analyse frames (default: auto).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Transcribe again even if a transcript is stored.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Whisper model name or local directory.")] = None,
) -> None:
    """Scan recorded broadcasts; print one JSON object per alert."""
    from app.pipeline import Scanner, ScanOptions, check_scannable

    started_ts = parse_time(started_at)
    for p in paths:  # fail on bad input before any work or write
        check_scannable(p)
    cfg, db, ddir = open_store(config, data_dir)
    if model:
        cfg = cfg.model_copy(update={"asr": cfg.asr.model_copy(update={"model": model})})
    scanner = Scanner(cfg, db, data_dir=ddir)
    _ = scanner.rules  # a broken rule pack stops the scan before anything is transcribed
    from asr.model import resolve_model

    resolve_model(cfg.asr)  # so does a missing or broken model
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        for p in paths:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, done: float, total: float, _p: Path = p,
                         tasks: dict[str, TaskID] = tasks) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"{_p.name} · {stage}", total=max(total, 1e-9))
                bar.update(tasks[stage], completed=done, total=max(total, 1e-9))

            result = scanner.scan(p, ScanOptions(stream_id=stream, started_ts=started_ts, video=video, force=force),
                                  progress)
            for a in result.alerts:
                sys.stdout.write(json.dumps(a, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            results.append((p, result))
    _summary(results)


def _summary(results: list[tuple[Path, Any]]) -> None:
    t = Table(title="livewatch scan", show_lines=False)
    for col in ("file", "duration", "alerts", "by category", "transcript", "time"):
        t.add_column(col)
    for p, r in results:
        cats: dict[str, int] = {}
        for a in r.alerts:
            cats[a["category"]] = cats.get(a["category"], 0) + 1
        t.add_row(
            p.name, f"{r.media.duration_s:.1f}s", str(len(r.alerts)),
            ", ".join(f"{k} {v}" for k, v in sorted(cats.items())) or "-",
            {"none": "transcribed", "transcript": "reused", "all": "unchanged (stored)"}[r.reused],
            f"{r.stats.get('total_s', 0):.1f}s",
        )
    err.print(t)


@app.command("alerts")
def list_alerts(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines instead of a table.")] = False,
    stream: Annotated[str | None, typer.Option("--stream")] = None,
    category: Annotated[str | None, typer.Option("--category")] = None,
    limit: Annotated[int | None, typer.Option("--limit")] = None,
) -> None:
    """List stored alerts."""
    from store import repo

    _cfg, db, _ = open_store(config, data_dir)
    if jsonl:  # streamed: bounded memory at any size; progress on stderr when it is a terminal
        with db.session() as s:
            total = repo.count_alerts(s) if not (stream or category) else None
            shown = min(total, limit) if total is not None and limit else total
            progress = err.is_terminal and (shown or 0) > 10_000
            out = sys.stdout
            lines = repo.iter_alert_payload_lines(s, stream_id=stream, category=category, limit=limit)
            for n, line in enumerate(lines, 1):  # the stored JSON passed through, paths resolved
                out.write(line + "\n")
                if progress and n % 10_000 == 0:
                    err.print(f"{n:,} / {shown:,} alerts", end="\r")
            if progress:
                err.print(" " * 40, end="\r")
        return
    with db.session() as s:
        rows = repo.alert_payloads(s, stream_id=stream, category=category, limit=limit)
    t = Table(title=f"{len(rows)} alerts")
    for col in ("alert_id", "category", "code", "severity", "source", "start_s", "rule", "text"):
        t.add_column(col, overflow="fold")
    for a in rows:
        t.add_row(a["alert_id"], a["category"], a["code"], a["severity"], a["source"], f"{a['start_s']:.1f}",
                  a["rule"], a["text"][:60])
    Console().print(t)


@app.command("replay")
def replay_command(
    rules: Annotated[list[Path], typer.Option("--rules", help="Rule-pack directory of the changed set (repeatable).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    defaults: Annotated[bool, typer.Option("--defaults/--no-defaults",
                                           help="Layer the changed set over the shipped packs.")] = True,
    since: Annotated[str | None, typer.Option("--since", help="Only broadcasts stored since (ISO 8601 or epoch).")] = None,
    stream: Annotated[str | None, typer.Option("--stream", help="Only this stream.")] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines instead of a table.")] = False,
) -> None:
    """Re-run stored transcripts with a changed rule set (no ASR) and show what would change."""
    from dataclasses import asdict

    from app.replay import replay
    from detectors.config import DEFAULT_RULES_DIR
    from detectors.engine import RuleSet

    cfg, db, _ = open_store(config, data_dir)
    baseline = RuleSet.load(cfg.rule_dirs())
    changed = RuleSet.load(([DEFAULT_RULES_DIR] if defaults else []) + list(rules))
    if cfg.semantic.enabled:  # the same semantic stage behind both, as the scan and monitor run it
        from detectors.semantic import SemanticDetector, StagedRules

        semantic = SemanticDetector(cfg.semantic)
        baseline, changed = StagedRules(baseline, semantic), StagedRules(changed, semantic)  # type: ignore[assignment]
    with db.session() as s:
        summary = replay(s, baseline_rules=baseline, new_rules=changed, alerts_cfg=cfg.alerts,
                         since_ts=parse_time(since), stream_id=stream)
    if jsonl:
        for r in summary.rows:
            sys.stdout.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    else:
        t = Table(title=f"replay: {summary.baseline_version} → {summary.new_version}")
        for col in ("change", "time", "category", "rule", "decision", "text"):
            t.add_column(col, overflow="fold")
        for r in summary.rows:
            cat = r.old_category if r.old_category == r.new_category else f"{r.old_category or '-'} → {r.new_category or '-'}"
            rule = r.old_rule if r.old_rule == r.new_rule else f"{r.old_rule or '-'} → {r.new_rule or '-'}"
            t.add_row(r.change, f"{r.broadcast_id[:8]} {r.start_s:.1f}s", cat, rule, r.decision or "-", r.text[:50])
        Console().print(t)
    parts = []
    for change, per in sorted(summary.counts().items()):
        detail = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(per.items()))
        parts.append(f"{change} {sum(per.values())} ({detail})")
    err.print(f"{summary.broadcasts} broadcasts, {summary.utterances} utterances: {summary.baseline_alerts} → "
              f"{summary.new_alerts} alerts; " + ("; ".join(parts) or "no change"))


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def _register_optional() -> None:
    """Sub-commands owned by other modules; each module is required once it exists in the tree."""
    import importlib

    for module, attr, name, kind in (
        ("app.cli_rules", "rules_app", "rules", "group"),
        ("app.cli_rules", "eval_command", "eval", "command"),
        ("app.cli_prices", "prices_app", "prices", "group"),
        ("app.cli_monitor", "monitor_command", "monitor", "command"),
        ("app.cli_monitor", "status_command", "status", "command"),
        ("app.cli_review", "review_command", "review", "command"),
        ("app.cli_review", "evidence_app", "evidence", "group"),
        ("app.cli_semantic", "tune_app", "tune", "group"),
        ("app.cli_worker", "worker_command", "worker", "command"),
        ("app.cli_worker", "bus_app", "bus", "group"),
        ("app.cli_worker", "dev_cluster_command", "dev-cluster", "command"),
    ):
        if importlib.util.find_spec(module) is None:
            continue
        mod = importlib.import_module(module)
        obj = getattr(mod, attr, None)
        if obj is None:
            continue
        if kind == "group":
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)


_register_optional()


def main() -> None:
    from app.errors import known_errors

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        app()
    except Exception as e:
        if not isinstance(e, known_errors()):  # only what was imported can have been raised
            raise
        err.print(f"[red]livewatch: error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("livewatch: interrupted; nothing half-written was kept")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
