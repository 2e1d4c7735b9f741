"""Cross-stream ASR batching on the CPU: N streams' windows decoded one at a time vs as one batch.

The question behind it (issue: many boxes, one monitor): an ASR worker serving many streams could
decode their pending windows together, since CTranslate2's Whisper takes a batch of features. This
measures what that buys on this machine, before the worker is built: the same windows (cut from the
corpus broadcasts, one per simulated stream, `--window-s` long as a live pass is) are encoded and
greedily decoded by the embedded Whisper base (int8), one window per call and then B windows per
call, alternating the two in one run (`--rounds`) so machine noise hits both. Encoder input is
trimmed to the window plus 1 s (as `live_asr.trim_encoder` does), the same length for every window.

Prints windows per second for each batch size, the gain over one-at-a-time measured in the same
run, the load average, and whether the batched transcripts equal the one-at-a-time ones (padding a
batch to its longest prompt can change greedy output; here every window has the same prompt and
length, so they should match).

    .venv/bin/python bench/bench_asr_batch.py [--streams 8] [--window-s 8] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.audio import load_audio  # noqa: E402
from asr.config import AsrConfig  # noqa: E402
from asr.model import resolve_model  # noqa: E402

SR = 16000


def windows(n: int, window_s: float) -> list[np.ndarray]:
    """`n` windows of `window_s` seconds, spread over both corpus broadcasts (one per 'stream')."""
    audio = [load_audio(ROOT / "examples" / "corpus" / f"broadcast_{i}.flac") for i in (0, 1)]
    w = int(window_s * SR)
    out: list[np.ndarray] = []
    for k in range(n):
        a = audio[k % 2]
        starts = max(1, (len(a) - w) // max(1, (n + 1) // 2))
        s = ((k // 2) * starts) % max(1, len(a) - w)
        out.append(np.ascontiguousarray(a[s : s + w], dtype=np.float32))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8, help="windows, one per simulated stream")
    ap.add_argument("--window-s", type=float, default=8.0)
    ap.add_argument("--batches", default="1,2,4,8", help="batch sizes to time (1 = one at a time)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    path = resolve_model(AsrConfig())
    model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=args.threads)
    tok = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="zh")
    prompt = [*tok.sot_sequence, tok.no_timestamps]

    wins = windows(args.streams, args.window_s)
    frames = int((args.window_s + 1.0) * 100)
    feats = []
    for w in wins:
        f = model.feature_extractor(w)  # n_mels x frames (window only)
        f = np.pad(f, ((0, 0), (0, max(0, frames - f.shape[-1]))))[:, :frames]
        feats.append(np.ascontiguousarray(f, dtype=np.float32))

    def decode(batch: list[np.ndarray]) -> list[str]:
        x = ctranslate2.StorageView.from_array(np.stack(batch))
        enc = model.model.encode(x, to_cpu=False)
        res = model.model.generate(
            enc,
            [prompt] * len(batch),
            beam_size=1,
            max_length=224,
            suppress_blank=True,
            return_scores=False,
        )
        return [tok.decode([t for t in r.sequences_ids[0] if t < tok.eot]) for r in res]

    sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    decode(feats[:1])  # warm-up
    times: dict[int, list[float]] = {b: [] for b in sizes}
    texts: dict[int, list[str]] = {}
    for _ in range(args.rounds):
        for b in sizes:
            t0 = time.perf_counter()
            out: list[str] = []
            for i in range(0, len(feats), b):
                out += decode(feats[i : i + b])
            times[b].append(time.perf_counter() - t0)
            texts[b] = out
    base = statistics.median(times[sizes[0]])
    print(
        f"Whisper base int8, {args.threads} CPU thread(s), {len(feats)} windows of {args.window_s:.0f} s "
        f"(encoder {frames / 100:.0f} s), greedy, {args.rounds} rounds alternating; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'batch':>5}  {'median s':>8}  {'windows/s':>9}  {'gain':>5}  same text as batch {sizes[0]}")
    for b in sizes:
        med = statistics.median(times[b])
        same = sum(x == y for x, y in zip(texts[b], texts[sizes[0]], strict=True))
        print(f"{b:>5}  {med:>8.2f}  {len(feats) / med:>9.2f}  {base / med:>5.2f}  {same}/{len(feats)}")
    print("first window:", texts[sizes[0]][0][:60])
    print(
        f"audio seconds per wall second at batch {sizes[-1]}: "
        f"{len(feats) * args.window_s / statistics.median(times[sizes[-1]]):.1f}"
    )


if __name__ == "__main__":
    main()
