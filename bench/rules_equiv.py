"""Rule engine against an earlier version of itself: identical detections, and same-run throughput.

usage: python bench/rules_equiv.py [--base REF] [--rules 0 100 1000 10000] [--speed] [--passes 3]

The base's `detectors/engine.py`, `normalize.py` and `rules.py` (git show REF:...) are loaded next to
the working tree's as a separate package, and both build the same rule sets: the shipped packs, alone
(`0`) and with bench_rules.py's synthetic packs of each size layered on top. Every line is run through
both, and the full results must be equal: `detect` (every field of every Detection, details included,
for speech and screen, with and without word timings), `match` (firing and silenced hits with their
reasons) and, on a sample, `explain`. The lines: the synthetic corpus and ASR transcripts (the bench's
text), every `should_flag` / `should_not_flag` / `clean` phrase of the packs, `corpus/real/*.jsonl`
(texts and context), neighbours joined with and without punctuation, and lines built from the
synthetic packs' own words (terms, numbers for their regexes, negation before them).

`--speed` then times both on the bench's text, interleaved per utterance (order alternating) so that
a shared, busy machine slows both alike, and prints chars/s by thread CPU time and the ratio.
Exit status 1 when any result differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_rules as B  # noqa: E402

from asr.types import Utterance, Word  # noqa: E402
from detectors import engine as new_engine  # noqa: E402
from detectors.config import DEFAULT_RULES_DIR  # noqa: E402

BASE_PKG = "_rules_base"
MODULES = ("engine", "normalize", "rules")


def load_base(ref: str, where: Path) -> Any:
    """The base's engine, as package `_rules_base` (its own normalize and rules, the rest shared)."""
    pkg = where / BASE_PKG
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    for mod in MODULES:
        src = subprocess.run(
            ["git", "show", f"{ref}:detectors/{mod}.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        for other in MODULES:
            src = re.sub(rf"^from detectors\.{other} import", f"from {BASE_PKG}.{other} import", src, flags=re.M)
        src = re.sub(r'^@register\("rules"\)$', "", src, flags=re.M)  # one detector type per process
        (pkg / f"{mod}.py").write_text(src, encoding="utf-8")
    sys.path.insert(0, str(where))
    import importlib

    return importlib.import_module(f"{BASE_PKG}.engine")


def corpus_lines() -> list[str]:
    out: list[str] = []
    for line in (ROOT / "examples" / "corpus" / "clips.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(line)["text"])
    for line in (ROOT / "tests" / "data" / "rules_extra_lines.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(line)["text"])
    for n in (0, 1):
        d = json.loads((ROOT / "tests" / "data" / f"asr_broadcast_{n}.json").read_text(encoding="utf-8"))
        out += [s["text"] for s in d["segments"]]
    for f in sorted((ROOT / "corpus" / "real").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            out.append(r["text"])
            ctx = r.get("context")
            if isinstance(ctx, str):
                out.append(ctx)
            elif isinstance(ctx, list):
                out += [c if isinstance(c, str) else json.dumps(c, ensure_ascii=False) for c in ctx]
    return out


def _fields(x: Any) -> tuple[Any, ...]:
    return tuple((f.name, getattr(x, f.name)) for f in dataclasses.fields(x))


def rule_dirs(n: int, words: list[str], tmp: Path) -> list[Path]:
    dirs = [DEFAULT_RULES_DIR]
    if n:
        d = tmp / f"synthetic{n}"
        d.mkdir()
        (d / "synthetic.yaml").write_text(B.synthetic_pack(n, words, 7), encoding="utf-8")
        dirs.append(d)
    return dirs


def compare(old: Any, new: Any, base_lines: list[str], words: list[str], n: int) -> tuple[int, int, int]:
    """(lines, detections, differences)."""
    lines = list(base_lines)
    for r in old.rules:
        lines += [*r.should_flag, *r.should_not_flag]
    lines += [c.text for c in old.clean]
    extra = [lines[i] + lines[i + 1] for i in range(0, len(lines) - 1, 3)]
    extra += [lines[i] + "，" + lines[i + 1] for i in range(1, len(lines) - 1, 7)]
    if n:
        top = min(9 * n, len(words) - 6)
        extra += [
            "".join(words[k : k + 4]) + f"{k % 50}单" + base_lines[k % len(base_lines)] for k in range(0, top, 7)
        ][:3000]
        extra += [
            base_lines[k % len(base_lines)][:6] + words[k] + "不" + words[k + 1] + "哦" + words[k + 5]
            for k in range(1, top, 11)
        ][:2000]
    lines = list(dict.fromkeys(lines + extra))
    diffs = dets = 0

    def report(kind: str, text: str, a: Any, b: Any) -> None:
        nonlocal diffs
        diffs += 1
        if diffs <= 10:
            print(f"  {kind} differs for {text!r}:\n    base: {a}\n    new:  {b}")

    for i, t in enumerate(lines):
        words_of = tuple(Word(t[k : k + 2], k * 0.1, k * 0.1 + 0.2) for k in range(0, len(t), 2)) if i % 2 else ()
        for src in ("speech", "screen"):
            u = Utterance(i, float(i), float(i) + 3.0, t, words=words_of, source=src)
            a = [_fields(d) for d in old.detect(u)]
            b = [_fields(d) for d in new.detect(u)]
            dets += len(a)
            if a != b:
                report(f"detect({src})", t, a, b)
        (ho, so, _), (hn, sn, _) = old.match(t), new.match(t)
        a2 = ([_fields(h) for h in ho], [_fields(h) for h in so])
        b2 = ([_fields(h) for h in hn], [_fields(h) for h in sn])
        if a2 != b2:
            report("match", t, a2, b2)
    for t in lines[:400]:
        eo, en = old.explain(t), new.explain(t)
        a3 = (eo.normalized, eo.pinyin, eo.steps, [_fields(h) for h in eo.hits], [_fields(h) for h in eo.exempted])
        b3 = (en.normalized, en.pinyin, en.steps, [_fields(h) for h in en.hits], [_fields(h) for h in en.exempted])
        if a3 != b3:
            report("explain", t, a3, b3)
    return len(lines), dets, diffs


def speed(old: Any, new: Any, texts: list[str], passes: int) -> tuple[float, float]:
    utts = [Utterance(i, float(i), float(i) + 3.0, t) for i, t in enumerate(texts)]
    chars = sum(map(len, texts))
    for rs in (old, new):
        for u in utts[:200]:
            rs.detect(u)
    clock = time.thread_time_ns
    rates: dict[str, list[float]] = {"base": [], "new": []}
    for p in range(passes):
        spent = {"base": 0, "new": 0}
        for i, u in enumerate(utts):
            pair = (("base", old), ("new", new)) if (i + p) % 2 else (("new", new), ("base", old))
            for name, rs in pair:
                t0 = clock()
                rs.detect(u)
                spent[name] += clock() - t0
        for name in rates:
            rates[name].append(chars / spent[name] * 1e9)
    return statistics.median(rates["base"]), statistics.median(rates["new"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare against (default: main)")
    ap.add_argument("--rules", type=int, nargs="+", default=[0, 100, 1000, 10000])
    ap.add_argument("--speed", action="store_true", help="also time both, interleaved per utterance")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--chars", type=int, default=200_000)
    args = ap.parse_args()
    words = B.vocabulary(7)
    base_lines = corpus_lines()
    total = 0
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        old_engine = load_base(args.base, tmp)
        for n in args.rules:
            dirs = rule_dirs(n, words, tmp)
            old = old_engine.RuleSet.load(dirs)
            new = new_engine.RuleSet.load(dirs)
            old.line_budget_s = new.line_budget_s = None  # a busy machine must not skip rules in one only
            t0 = time.perf_counter()
            nlines, dets, diffs = compare(old, new, base_lines, words, n)
            total += diffs
            label = f"shipped+{n}" if n else "shipped"
            print(
                f"{label:>14} ({len(new.rules)} rules): {nlines} lines, {dets} detections, "
                f"{diffs} differences ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            if args.speed:
                old.line_budget_s = new.line_budget_s = old_engine.DEFAULT_LINE_BUDGET_S
                b, s = speed(old, new, B.speech(args.chars), args.passes)
                print(f"{'':>14} base {b:>9,.0f} chars/s  new {s:>9,.0f} chars/s  ratio {s / b:.2f}x", flush=True)
    print("identical" if total == 0 else f"DIFFERENT: {total} differences")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
