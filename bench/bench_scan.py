"""Benchmark: raw faster-whisper vs a whole `livewatch scan` of the same file, same model and settings.

Each run is a fresh subprocess (model load included on both sides), so its peak RSS is its own; the
two variants alternate, and the best of N runs of each is compared, so a noisy machine affects both
alike. Prints times, the ratio (target <= 1.15 on a 2-core machine) and peak RSS (target <= 1.5 GB).

    python bench/bench_scan.py [MEDIA] [--runs N] [--video]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW = r"""
import json, sys, time
t0 = time.perf_counter()
from faster_whisper import WhisperModel, decode_audio
from asr.config import AsrConfig
from asr.model import resolve_model
from asr.transcriber import resolve_compute
cfg = AsrConfig()
device, compute = resolve_compute(cfg)
model = WhisperModel(resolve_model(cfg), device=device, compute_type=compute, cpu_threads=cfg.cpu_threads)
audio = decode_audio(sys.argv[1])
segments, _ = model.transcribe(
    audio, language=cfg.language, beam_size=cfg.beam_size, temperature=list(cfg.temperatures),
    compression_ratio_threshold=cfg.compression_ratio_threshold, log_prob_threshold=cfg.log_prob_threshold,
    no_speech_threshold=cfg.no_speech_threshold, condition_on_previous_text=cfg.condition_on_previous_text,
    initial_prompt=cfg.initial_prompt, hotwords=cfg.hotwords, word_timestamps=cfg.word_timestamps,
    vad_filter=cfg.vad_filter, vad_parameters=cfg.vad.model_dump())
n = sum(len(s.words or ()) for s in segments)
print(json.dumps({"seconds": time.perf_counter() - t0, "words": n}))
"""

SCAN = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from app.config import RootConfig
from app.pipeline import Scanner, ScanOptions
from store.db import Database
data = Path(sys.argv[2])
cfg = RootConfig(data_dir=data)
db = Database.for_data_dir(data)
r = Scanner(cfg, db, data_dir=data).scan(sys.argv[1], ScanOptions(video=sys.argv[3] == "1"))
print(json.dumps({"seconds": time.perf_counter() - t0, "alerts": len(r.alerts), "stats": r.stats}))
"""


def run(code: str, *args: str) -> tuple[dict, float]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024.0  # MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("media", nargs="?", default=str(ROOT / "examples" / "corpus" / "broadcast_1.flac"))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--video", action="store_true", help="scan with frame analysis (video files)")
    args = ap.parse_args()
    raw_t, scan_t, raw_rss, scan_rss = [], [], [], []
    for i in range(args.runs):
        r, rss = run(RAW, args.media)
        raw_t.append(r["seconds"])
        raw_rss.append(rss)
        with tempfile.TemporaryDirectory() as tmp:
            s, rss = run(SCAN, args.media, tmp, "1" if args.video else "0")
        scan_t.append(s["seconds"])
        scan_rss.append(rss)
        print(f"run {i + 1}: faster-whisper {r['seconds']:.2f}s ({r['words']} words, {raw_rss[-1]:.0f} MiB)  "
              f"livewatch scan {s['seconds']:.2f}s ({s['alerts']} alerts, {rss:.0f} MiB; "
              f"asr {s['stats'].get('asr_s')}s video {s['stats'].get('video_s')}s "
              f"analysis+evidence {s['stats'].get('analysis_s')}s)", flush=True)
        time.sleep(0.5)
    best_raw, best_scan = min(raw_t), min(scan_t)
    print(f"media: {args.media}  video: {'on' if args.video else 'off'}  cpus: {os.cpu_count()}")
    print(f"faster-whisper (raw) best: {best_raw:.2f}s   livewatch scan best: {best_scan:.2f}s")
    print(f"ratio scan/raw: {best_scan / best_raw:.3f}   (target <= 1.15)")
    print(f"peak RSS: raw {max(raw_rss):.0f} MiB, scan {max(scan_rss):.0f} MiB   (target <= 1536 MiB)")


if __name__ == "__main__":
    main()
