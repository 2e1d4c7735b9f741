"""Rule-engine throughput: characters of speech matched per second at 100, 1,000 and 10,000 rules.

usage: python bench/bench_rules.py [--rules 100 1000 10000] [--chars 200000] [--seed 7]

For each size, synthetic rule packs are written to a temporary directory and layered on top of the
shipped packs: real dictionary words (pypinyin's phrase list) as terms, in the mix a tuner would
write — literal terms in pinyin mode (60 %), fuzzy terms (20 %), proximity pairs (10 %) and regexes
with a literal trigger (10 %), each rule with an exemption. The text is the corpus's labelled lines
and the real ASR transcripts, repeated to `--chars` characters and cut into utterances as the ASR
worker would hand them over. Time covers `RuleSet.detect` per utterance (normalization, pinyin,
automata, candidate evaluation, detections with times). Prints one line per size: throughput by the
process's CPU time (best of --repeats passes, and the median: the machine is shared) and by
wall-clock time (best pass), and the load time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.types import Utterance  # noqa: E402
from detectors.config import DEFAULT_RULES_DIR  # noqa: E402
from detectors.engine import RuleSet  # noqa: E402
from detectors.normalize import normalize_term  # noqa: E402

CATS = ["false_claim", "price_fraud", "fake_sales", "vulgar", "defamation", "counterfeit"]


def vocabulary(seed: int) -> list[str]:
    from pypinyin.phrases_dict import phrases_dict

    words = sorted(w for w in phrases_dict if 2 <= len(w) <= 5 and all("\u4e00" <= c <= "\u9fff" for c in w))
    random.Random(seed).shuffle(words)
    return words


def synthetic_pack(n: int, words: list[str], seed: int) -> str:
    rng = random.Random(seed)
    lines = ["pack: synthetic", "law: 广告法 第28条", "rules:"]
    it = itertools.cycle(words)

    def w(min_len: int = 2) -> str:
        while True:
            x = next(it)
            if len(x) >= min_len:
                return x

    for i in range(n):
        cat = CATS[i % len(CATS)]
        kind = rng.random()
        head = [f"  - id: synth.r{i}", f"    category: {cat}", "    code: A1", "    severity: medium"]
        if kind < 0.6:
            body = [f"    terms: [{w(3)}, {w(3)}, {w(3)}]"]
        elif kind < 0.8:
            body = ["    mode: fuzzy", f"    terms: [{w(4)}, {w(4)}]"]
        elif kind < 0.9:
            body = [
                "    near:",
                f"      - a: [{w()}, {w()}]",
                f"        b: [{w()}, {w()}]",
                "        within: 8",
            ]
        else:
            body = [f'    regex: ["{normalize_term(w(2))}{{num}}(单|件)"]']
        tail = [f"    exempt: [{w()}]", "    should_flag: [x]", "    should_not_flag: [y]"]
        lines += head + body + tail
    return "\n".join(lines) + "\n"


def speech(chars: int) -> list[str]:
    lines: list[str] = []
    for line in (ROOT / "examples" / "corpus" / "clips.jsonl").read_text(encoding="utf-8").splitlines():
        lines.append(json.loads(line)["text"])
    for line in (
        (ROOT / "tests" / "data" / "rules_extra_lines.jsonl").read_text(encoding="utf-8").splitlines()
    ):
        lines.append(json.loads(line)["text"])
    for n in (0, 1):
        d = json.loads((ROOT / "tests" / "data" / f"asr_broadcast_{n}.json").read_text(encoding="utf-8"))
        lines += [s["text"] for s in d["segments"]]
    out: list[str] = []
    total = 0
    while total < chars:
        for x in lines:
            out.append(x)
            total += len(x)
            if total >= chars:
                break
    return out


def run(n: int, words: list[str], texts: list[str], seed: int, repeats: int) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "synthetic.yaml").write_text(synthetic_pack(n, words, seed), encoding="utf-8")
        t0 = time.perf_counter()
        rs = RuleSet.load([DEFAULT_RULES_DIR, Path(tmp)])
        load_s = time.perf_counter() - t0
    utts = [Utterance(i, float(i), float(i) + 3.0, t) for i, t in enumerate(texts)]
    chars = sum(len(t) for t in texts)
    for u in utts[:200]:  # warm-up: code tables, caches
        rs.detect(u)
    rates = []
    walls = []
    dets = 0
    for _ in range(repeats):
        dets = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for u in utts:
            dets += len(rs.detect(u))
        rates.append(chars / (time.process_time() - c0))
        walls.append(chars / (time.perf_counter() - t0))
    return max(rates), statistics.median(rates), max(walls), load_s, len(rs.rules), dets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--chars", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5, help="passes per size; the best is reported")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    words = vocabulary(args.seed)
    texts = speech(args.chars)
    print(
        f"text: {sum(map(len, texts))} chars in {len(texts)} utterances; target >= 200,000 chars/s at 10,000 rules"
    )
    for n in args.rules:
        rate, median, wall, load_s, total, dets = run(n, words, texts, args.seed, args.repeats)
        print(
            f"rules={n:>6} (+shipped, {total} total)  {rate:>10,.0f} chars/s CPU (median {median:,.0f})  "
            f"{wall:>10,.0f} chars/s wall  "
            f"load {load_s:6.2f} s  detections/pass {dets}",
            flush=True,
        )


if __name__ == "__main__":
    main()
