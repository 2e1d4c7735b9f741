"""`livewatch tune semantic`: retrain the semantic head and show what it does, per category.

Trains on the tune half only (corpus/real/*.jsonl, examples/corpus/clips.jsonl and probe*.jsonl, the
rule packs' phrase tables, and with ``--data-dir``/``--config`` the reviewers' confirmed /
false-positive decisions), chooses both models' L2 strengths and each category's threshold by
cross-validation on the tune half (near-duplicate lines in one fold), writes the head
(``.npz`` + ``.json``), then prints per category: tune (out-of-fold) and test precision/recall of the
head alone, and on the test half of corpus/real the rules alone vs rules + semantic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["tune_app"]

tune_app = typer.Typer(
    name="tune",
    help="Retrain learned stages from labelled lines (tune half only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


@tune_app.command("semantic")
def semantic_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the head (.npz; .json beside it).")] = Path(
        "configs/semantic/head.npz"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Also learn from reviewers' decisions stored in this data directory."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Root config YAML (rules, db).")] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="Directory of labelled *.jsonl (default corpus/real).")
    ] = None,
    target_precision: Annotated[
        float, typer.Option("--target-precision", help="Out-of-fold precision each threshold must reach.")
    ] = 0.9,
    embed_cache: Annotated[
        Path | None, typer.Option("--embed-cache", help="Keep embeddings in this .npz between runs.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Retrain the semantic head; print per-category tune/test precision and recall."""
    from app.config import load_config
    from app.semantic_tune import TuneOptions, result_json, tune
    from detectors.engine import RuleSet
    from detectors.semantic import CATEGORIES, OFF
    from detectors.semantic_data import DEFAULT_CORPUS_DIR

    err = Console(stderr=True, highlight=False)
    cfg = load_config(config)
    db = None
    if data_dir is not None or (config is not None and (cfg.data_dir or cfg.db_url)):
        from store.db import Database

        db = Database.for_data_dir(cfg.resolved_data_dir(data_dir), cfg.db_url)
    rules = RuleSet.load(cfg.rule_dirs())
    opts = TuneOptions(
        out=out,
        corpus_dir=corpus or DEFAULT_CORPUS_DIR,
        rule_dirs=tuple(cfg.rule_dirs()),
        db=db,
        target_precision=target_precision,
        embed_cache=embed_cache,
    )
    r = tune(opts, rules, progress=lambda m: err.print(m, markup=False))
    if as_json:
        sys.stdout.write(json.dumps(result_json(r), ensure_ascii=False, sort_keys=True) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    t = Table(title=f"semantic head {r.hash[:12]} (l2={r.l2:g}, n-gram l2={r.l2_ngram:g}) — head alone")
    for col in ("category", "threshold", "tune P", "tune R", "test P", "test R", "test tp/fp/fn"):
        t.add_column(col, justify="left" if col == "category" else "right")
    for c in CATEGORIES:
        thr = r.thresholds[c]
        t.add_row(
            c,
            "off" if thr >= OFF else f"{thr:.3f}",
            _pct(r.tune_cv.precision(c)),
            _pct(r.tune_cv.recall(c)),
            _pct(r.test.precision(c)),
            _pct(r.test.recall(c)),
            f"{r.test.tp[c]}/{r.test.fp[c]}/{r.test.fn[c]}",
        )
    t.add_row(
        "all", "", _pct(r.tune_cv.precision()), _pct(r.tune_cv.recall()), _pct(r.test.precision()),
        _pct(r.test.recall()), f"{sum(r.test.tp.values())}/{sum(r.test.fp.values())}/{sum(r.test.fn.values())}",
    )
    console.print(t)
    c2 = Table(title="corpus/real test half: rules alone vs rules + semantic")
    for col in ("category", "rules P", "rules R", "+sem P", "+sem R", "recall gain", "extra fp"):
        c2.add_column(col, justify="left" if col == "category" else "right")
    a, b = r.rules_test, r.staged_test
    cat_rows: list[str | None] = [*CATEGORIES, None]
    for cat in cat_rows:
        if cat is not None and not (a.tp[cat] or a.fn[cat] or a.fp[cat] or b.fp[cat]):
            continue
        ra, rb = a.recall(cat), b.recall(cat)
        gain = "-" if ra is None or rb is None else f"{rb - ra:+.2f}"
        extra = (b.fp[cat] - a.fp[cat]) if cat else sum(b.fp.values()) - sum(a.fp.values())
        c2.add_row(cat or "all", _pct(a.precision(cat)), _pct(ra), _pct(b.precision(cat)), _pct(rb), gain, str(extra))
    console.print(c2)
    for n in r.notes:
        err.print(n, markup=False)
    console.print(f"wrote {out} (sha256 {r.hash}); sources: {json.dumps(r.sources, ensure_ascii=False)}")
