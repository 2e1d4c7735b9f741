"""Benchmark and acceptance check of on-screen text (and optionally visual) analysis on one video.

usage: python bench/bench_video.py [VIDEO] [--truth JSON] [--interval 2.0] [--out alerts.jsonl]
                                   [--threads 1] [--visual]

Samples frames, reads them with the change-gated `ScreenTextReader` (real RapidOCR), runs the caption
utterances through the shipped rule packs and the price checks, writes alerts JSONL (one object per
detection: category, start_s, end_s, source "screen", ...), scores them with tools/score.py --source
screen, and prints what the reading cost: frames sampled vs frames read, recognizer calls, and
core-seconds per stream-second (process CPU from getrusage, all threads, model loading included, and
also without it).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.types import Utterance  # noqa: E402
from detectors.screen import ScreenTextReader  # noqa: E402
from detectors.types import Detection  # noqa: E402
from detectors.video_config import OnnxConfig, ScreenTextConfig, VisualConfig  # noqa: E402
from ingest.frames import FrameSampler  # noqa: E402


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def text_detections(captions: list[Utterance]) -> tuple[list[Detection], str]:
    """Rule-pack and price detections for the captions; the second item says what ran (or why not)."""
    from detectors.config import DEFAULT_RULES_DIR
    from detectors.engine import RuleSet

    found: list[Detection] = []
    notes = []
    try:
        rules = RuleSet.load([DEFAULT_RULES_DIR])
    except Exception as e:  # a pack being edited elsewhere must not hide the OCR figures
        notes.append(f"rule packs not loaded: {e}")
    else:
        notes.append(f"rules version {rules.version}")
        for u in captions:
            found += rules.detect(u)
    try:
        from detectors.price import PriceChecker, analyze_utterances

        res = analyze_utterances(
            [], captions, PriceChecker(), stream_id=None, started_ts=None, broadcast_id=None
        )
        found += res.detections
        notes.append(f"price claims {len(res.claims)}")
    except Exception as e:
        notes.append(f"price checks not run: {e}")
    return found, "; ".join(notes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", default=str(ROOT / "examples" / "corpus" / "broadcast_0.mp4"))
    ap.add_argument("--truth", help="broadcast JSON with overlays (default: the video's .json)")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between sampled frames")
    ap.add_argument(
        "--out", default=str(Path(tempfile.gettempdir()) / "livewatch-bench" / "alerts_screen.jsonl")
    )
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--visual", action="store_true", help="also run NudeNet on every sampled frame")
    ap.add_argument(
        "--naive",
        action="store_true",
        help="also time reading every sampled frame whole (no gate), to compare",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    video = Path(args.video)
    truth = Path(args.truth) if args.truth else video.with_suffix(".json")
    onnx = OnnxConfig(intra_op_threads=args.threads, inter_op_threads=1)

    cpu0, wall0 = cpu_s(), time.perf_counter()
    reader = ScreenTextReader(ScreenTextConfig(onnx=onnx))
    engine = reader.engine  # load the models now, to report loading apart from reading
    visual = None
    if args.visual:
        from detectors.visual import VisualDetector

        visual = VisualDetector(VisualConfig(onnx=onnx))
        _ = visual.model
    # RapidOCR loads each model on first use: warm both on a tiny image so loading is counted here.
    import numpy as np

    blank = np.zeros((48, 160, 3), np.uint8)
    engine.detect(blank)
    engine.recognize([blank])
    load_cpu, load_wall = cpu_s() - cpu0, time.perf_counter() - wall0

    sampler = FrameSampler(args.interval)
    captions: list[Utterance] = []
    visual_dets: list[Detection] = []
    cpu1, wall1 = cpu_s(), time.perf_counter()
    last_t = 0.0
    for frame in sampler.sample_file(video):
        captions += reader.feed(frame)
        if visual is not None:
            visual_dets += visual.feed(frame)
        last_t = frame.t_s
    captions += reader.flush()
    if visual is not None:
        visual_dets += visual.flush()
    run_cpu, run_wall = cpu_s() - cpu1, time.perf_counter() - wall1

    import av

    with av.open(str(video)) as c:
        duration = (c.duration or 0) / 1_000_000 or last_t

    detections, notes = text_detections(captions)
    detections += visual_dets
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for d in sorted(detections, key=lambda d: d.start_s):
            f.write(
                json.dumps(
                    {
                        "category": d.category,
                        "code": d.code,
                        "rule": d.rule_id,
                        "source": d.source,
                        "start_s": round(d.start_s, 3),
                        "end_s": round(d.end_s, 3),
                        "matched": d.matched,
                        "text": d.text,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )

    print(f"video        {video} ({duration:.1f} s), interval {args.interval} s, ort threads {args.threads}")
    print(f"device       {getattr(engine, 'device', '?')}")
    print("captions:")
    for u in captions:
        print(
            f"  {u.start_s:7.2f}-{u.end_s:7.2f}  {u.text}  (score {u.meta.get('score')}, reads {u.meta.get('readings')})"
        )
    print(f"detections   {len(detections)} -> {out}  [{notes}]")
    for d in sorted(detections, key=lambda d: d.start_s):
        print(f"  {d.start_s:7.2f}-{d.end_s:7.2f}  {d.category:12s} {d.rule_id:40s} {d.source} {d.matched}")
    st = reader.stats
    print(
        f"OCR          frames sampled {st.frames_sampled}, frames read {st.frames_read} "
        f"(full {st.full_frames_read}), bands {st.regions_read}, "
        f"pixels read {st.region_pixels / max(1, st.frame_pixels):.1%} of sampled, "
        f"boxes detected {st.boxes_detected}, recognized {st.boxes_recognized}"
    )
    print(f"OCR thread   cpu {st.cpu_s:.2f} s, wall {st.wall_s:.2f} s")
    if visual is not None:
        vs = visual.stats
        print(
            f"visual       frames {vs.frames_sampled}, model calls {vs.frames_analysed}, cpu {vs.cpu_s:.2f} s"
        )
    print(f"decode       {sampler.frames_decoded} frames decoded")
    print(f"model load   cpu {load_cpu:.2f} s, wall {load_wall:.2f} s")
    print(
        f"run          cpu {run_cpu:.2f} s, wall {run_wall:.2f} s (sampling + decoding + OCR{' + visual' if visual else ''})"
    )
    print(
        f"core-s per stream-s: {run_cpu / duration:.4f} (run), {(run_cpu + load_cpu) / duration:.4f} "
        f"(with model load); target <= 0.1"
    )
    if args.naive:
        from detectors.screen import _crop_quad

        cpu2 = cpu_s()
        n = 0
        for frame in FrameSampler(args.interval).sample_file(video):
            boxes = engine.detect(frame.image)
            engine.recognize([_crop_quad(frame.image, b.quad) for b in boxes])
            n += 1
        naive = cpu_s() - cpu2
        print(
            f"no gate      {n} frames read whole: cpu {naive:.2f} s = {naive / duration:.4f} core-s per stream-s"
        )
    if truth.exists():
        print(f"score        tools/score.py {truth.name} --source screen")
        res = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "score.py"), str(truth), str(out), "--source", "screen"],
            capture_output=True,
            text=True,
            check=True,
        )
        print("  " + res.stdout.strip().replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
