"""The bus ASR worker's decoding, batched across streams vs one window at a time, on this machine.

What `livewatch worker asr` does with N streams, without the bus around it (the bus adds no decoding):
N broadcasts (the two corpus broadcasts alternated, each from its own offset) each get a LiveTranscript
(asr/streaming.py) and are fed `--step-s` of audio per tick, as live rooms would send it, but as fast
as the decoder takes it; after each tick every broadcast with a pass due is decoded, either all as one
batch (`BusAsr.decode` with asr/batching.py, as the worker does with `bus.asr_batch` >= N) or one at a
time (`asr_batch: 1`). The two modes run on the same audio, one after the other, `--rounds` times
alternating so machine noise hits both. Prints windows per second and audio seconds per wall second of
each, the gain, the mean batch, and how many committed lines the two modes share (batching changes
padding and cuts prompts to the shortest in a batch, so lines may differ slightly).

    .venv/bin/python bench/bench_bus_asr.py [--streams 4] [--seconds 40] [--step-s 1] [--rounds 1]
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

from app.bus_asr import BusAsr  # noqa: E402
from app.monitor_config import LiveAsrSection  # noqa: E402
from app.monitor_parts import live_transcriber_for  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.build import enable_batching  # noqa: E402
from asr.config import AsrConfig  # noqa: E402
from asr.streaming import LiveTranscript  # noqa: E402

SR = 16_000


def run(asr: BusAsr, audio: list[np.ndarray], seconds: float, step_s: float) -> tuple[float, int, list[str]]:
    """(wall seconds, windows decoded, committed lines) for one pass over all streams' audio."""
    la = LiveAsrSection()
    ts = [LiveTranscript(f"s{i}", la.options()) for i in range(len(audio))]
    lines: list[str] = []
    windows = 0
    pos = 0.0
    t0 = time.perf_counter()
    while True:
        if pos < seconds:
            for t, a in zip(ts, audio, strict=True):
                t.add_audio(pos, a[int(pos * SR) : int((pos + step_s) * SR)])
            pos += step_s
        elif not all(t.final for t in ts):
            for t in ts:
                t.finish()
        ready = [t for t in ts if not t.exhausted and t.wants_pass()]
        if not ready:
            if all(t.exhausted for t in ts):
                break
            continue
        fake = [_Ctx(t) for t in ready]
        for c, res in zip(fake, asr.decode(fake), strict=True):  # type: ignore[arg-type]
            if isinstance(res, BaseException):
                raise res
            lines += [f"{c.transcript.key}:{u.index}:{u.text}" for u in res.utterances]
        windows += len(ready)
    return time.perf_counter() - t0, windows, lines


class _Ctx:
    """What `BusAsr.decode` reads of a broadcast (no store is used here)."""

    def __init__(self, t: LiveTranscript) -> None:
        self.transcript = t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=40.0, help="audio per stream")
    ap.add_argument("--step-s", type=float, default=1.0, help="audio fed per tick (a live chunk)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: its default)")
    args = ap.parse_args()

    corpus = [load_audio(ROOT / "examples" / "corpus" / f"broadcast_{i}.flac") for i in (0, 1)]
    audio = []
    for k in range(args.streams):
        a = corpus[k % 2]
        off = int((k // 2) * 7.0 * SR) % max(1, len(a) - int(args.seconds * SR))
        audio.append(np.ascontiguousarray(a[off : off + int(args.seconds * SR)]))
    la = LiveAsrSection()
    transcriber = live_transcriber_for(AsrConfig(cpu_threads=args.threads), la)
    batching = enable_batching(transcriber)
    assert batching is not None
    one = BusAsr(None, la.options(), transcriber, None)  # type: ignore[arg-type]
    many = BusAsr(None, la.options(), transcriber, batching)  # type: ignore[arg-type]
    run(one, [a[: 3 * SR] for a in audio], 3.0, args.step_s)  # warm-up
    times: dict[str, list[float]] = {"one at a time": [], "batched": []}
    wins: dict[str, int] = {}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, asr in (("one at a time", one), ("batched", many)):
            took, n, lines = run(asr, audio, args.seconds, args.step_s)
            times[name].append(took)
            wins[name], texts[name] = n, lines
    print(
        f"{args.streams} streams x {args.seconds:.0f} s, {args.step_s:g} s per tick, Whisper base int8 on the "
        f"CPU ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}), {args.rounds} round(s)"
    )
    base = statistics.median(times["one at a time"])
    for name in times:
        med = statistics.median(times[name])
        print(
            f"{name:>14}: {med:6.1f} s, {wins[name]} windows, {wins[name] / med:5.2f} windows/s, "
            f"{args.streams * args.seconds / med:5.1f} audio s per s, gain {base / med:4.2f}"
        )
    st = batching.stats
    print(f"mean batch: encode {st.mean_batch('encode'):.1f}, generate {st.mean_batch('generate'):.1f}")
    a, b = set(texts["one at a time"]), set(texts["batched"])
    print(f"committed lines: {len(a)} one at a time, {len(b)} batched, {len(a & b)} identical")


if __name__ == "__main__":
    main()
