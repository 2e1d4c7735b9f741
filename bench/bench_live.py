"""Live latency and capacity: corpus broadcasts served as live HLS on 127.0.0.1, monitored end to end.

    python bench/bench_live.py                    # 1 stream: p50/p95 alert latency
    python bench/bench_live.py --streams 3        # 3 streams at once: per-stream max ASR lag
    python bench/bench_live.py --video            # live frame analysis too: on-screen alerts and their latency

Each stream is `ffmpeg -re examples/corpus/broadcast_0.mp4 → HLS` (2 s segments, as a platform CDN
serves) behind a local HTTP server, read through streamlink by a real `livewatch` monitor with the
embedded Whisper base model and the shipped rule packs. The producer's clock equals the file's clock,
and each broadcast stores the source clock at its start, so every alert maps onto the corpus.

Latency of an alert = when its row was committed − when the end of the utterance it is about was
broadcast (producer start + the ground-truth span's end, for alerts that match a labelled span;
producer start + the alert's own end for the others). It includes everything a user would wait for:
HLS packaging and polling, recording, ASR, rules, the database write. ASR lag per stream is sampled
from the monitor every 0.5 s; "bounded" means the lag in the second half of the run is no larger
than in the first half plus one pass.

Writes bench/out/live_<n>streams.json. The machine is shared: note `load` in the output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from live_helpers import HlsServer  # noqa: E402
from sqlalchemy import select  # noqa: E402

from app.monitor import Monitor  # noqa: E402
from app.monitor_config import MonitorConfig  # noqa: E402
from ingest.ffmpeg import concat_segments, probe  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import AlertRow, Broadcast, UtteranceRow  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--media", type=Path, default=ROOT / "examples" / "corpus" / "broadcast_0.mp4")
    ap.add_argument("--truth", type=Path, default=ROOT / "examples" / "corpus" / "broadcast_0.json")
    ap.add_argument("--hls-time", type=float, default=2.0)
    ap.add_argument("--hls-live-edge", type=int, default=1)
    ap.add_argument("--reload", type=float, default=None, help="streamlink playlist reload time (s)")
    ap.add_argument("--beam", type=int, default=None, help="live_asr.beam_size (default: the config's)")
    ap.add_argument("--min-step", type=float, default=None)
    ap.add_argument("--pause", type=float, default=None)
    ap.add_argument(
        "--video", action="store_true", help="live frame analysis on too (OCR + NudeNet share the CPU)"
    )
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any live_asr field")
    ap.add_argument("--loops", type=int, default=1, help="play the broadcast this many times in a row")
    ap.add_argument("--stagger", type=float, default=0.7, help="seconds between producer starts")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    ap.add_argument("--log", type=Path, default=None, help="write the monitor's debug log here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log:
        handler = logging.FileHandler(args.log, mode="w")
        handler.setFormatter(logging.Formatter("%(created).3f %(levelname)s %(name)s: %(message)s"))
        for name in ("app.monitor", "asr.transcriber", "ingest.recorder"):
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(handler)

    truth = json.loads(args.truth.read_text(encoding="utf-8"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    period = probe(args.media).duration_s
    spans = [
        {
            **sp,
            "id": f"{sp['id']}#{k}",
            "start_s": sp["start_s"] + k * period,
            "end_s": sp["end_s"] + k * period,
        }
        for k in range(args.loops)
        for sp in truth["spans"]
    ]
    data = tmp / "data"
    live_asr: dict[str, Any] = {}
    if args.beam is not None:
        live_asr["beam_size"] = args.beam
    if args.min_step is not None:
        live_asr["min_step_s"] = args.min_step
    if args.pause is not None:
        live_asr["pause_s"] = args.pause
    for kv in args.set:
        key, _, raw = kv.partition("=")
        try:
            live_asr[key] = json.loads(raw)
        except json.JSONDecodeError:
            live_asr[key] = raw
    media = args.media
    if args.loops > 1:  # one continuous file: the broadcast N times
        media = Path(concat_segments([args.media] * args.loops, tmp / f"loop{args.loops}.mp4"))
    servers = [HlsServer(media, tmp / f"hls{i}", hls_time_s=args.hls_time) for i in range(args.streams)]
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "live_asr": live_asr,
            "video": {"enabled": bool(args.video)},
            "streams": [
                {
                    "id": f"s{i}",
                    "url": srv.url,
                    "hls_live_edge": args.hls_live_edge,
                    "stall_timeout_s": 15,
                    "hls_playlist_reload_s": args.reload,
                }
                for i, srv in enumerate(servers)
            ],
        }
    )
    db = Database.for_data_dir(data)
    mon = Monitor(cfg, db, data)
    t_load = time.perf_counter()
    _ = mon.transcriber
    print(f"model loaded in {time.perf_counter() - t_load:.1f} s; load average {os.getloadavg()}", flush=True)
    for i, srv in enumerate(servers):
        if i:
            time.sleep(args.stagger)
        srv.start()
    mon.start()

    lags: dict[str, list[tuple[float, float]]] = {f"s{i}": [] for i in range(args.streams)}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            st = mon.status()
            for sid, info in st["streams"].items():
                # only while the room is live: after the producer stops the live clock runs on with no
                # audio until the stall timeout ends the recording, which is not ASR falling behind
                if info["asr_lag_s"] is not None and not servers[int(sid[1:])].finished:
                    lags[sid].append((time.time(), info["asr_lag_s"]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loads = []
    while not all(s.finished for s in servers):
        time.sleep(1.0)
        loads.append(os.getloadavg()[0])
    t_end = time.time()
    while time.time() - t_end < 60:  # let the last utterances, alerts and clips through
        time.sleep(1.0)
        with db.session() as s:
            pending = s.scalars(select(AlertRow).where(AlertRow.evidence_status == "pending")).all()
            live = s.scalars(select(Broadcast).where(Broadcast.status.in_(["live", "ended"]))).all()
        if not pending and not live:
            break
    stop.set()
    status = mon.status()
    mon.stop()
    for srv in servers:
        srv.stop()

    with db.session() as s:
        broadcasts = {b.id: b for b in s.scalars(select(Broadcast))}
        alerts = s.scalars(select(AlertRow)).all()
        utts = s.scalars(select(UtteranceRow)).all()
    by_stream: dict[str, dict[str, Any]] = {}
    all_lat: list[float] = []
    all_tp_lat: list[float] = []
    for i, srv in enumerate(servers):
        sid = f"s{i}"
        assert srv.started_ts is not None
        # speech alerts are scored against the spoken lines; on-screen ones (--video) are counted apart
        mine = [a for a in alerts if a.stream_id == sid and a.source == "speech"]
        screen = [a for a in alerts if a.stream_id == sid and a.source != "speech"]
        lat, tp_lat, tp, fp = [], [], 0, 0
        commit_lat, store_lat, asr_part = [], [], []
        hit_spans: set[tuple[str, str]] = set()
        for a in mine:
            b = broadcasts[a.broadcast_id]
            src0 = float(b.source_start_s or 0.0)
            lo, hi = a.start_s + src0, a.end_s + src0
            match = [
                sp
                for sp in spans
                if a.category in sp["labels"] and lo <= sp["end_s"] + 2 and hi >= sp["start_s"] - 2
            ]
            if match:
                sp = min(match, key=lambda sp: abs(sp["end_s"] - hi))
                d = a.created_ts - (srv.started_ts + sp["end_s"])
                tp_lat.append(d)
                tp += 1
                said = [
                    u
                    for u in utts
                    if u.broadcast_id == a.broadcast_id
                    and u.start_s <= a.end_s
                    and u.end_s >= a.start_s
                    and (u.meta or {}).get("committed_ts")
                ]
                if said:
                    committed = max(float(u.meta["committed_ts"]) for u in said)
                    commit_lat.append(committed - (srv.started_ts + sp["end_s"]))
                    if b.started_ts is not None:  # after the audio reached the monitor (its live clock)
                        asr_part.append(committed - (b.started_ts + sp["end_s"] - src0))
                    store_lat.append(a.created_ts - committed)
                hit_spans.add((sp["id"], a.category))
            else:
                d = a.created_ts - (srv.started_ts + hi)
                fp += 1
            lat.append(d)
        # on-screen alerts (--video): from when the caption appeared (the overlay's start) to the alert row
        overlays = [
            {**ov, "start_s": ov["start_s"] + k * period, "end_s": ov["end_s"] + k * period}
            for k in range(args.loops)
            for ov in truth.get("overlays", [])
        ]
        screen_lat, screen_hit = [], set()
        for a in screen:
            b = broadcasts[a.broadcast_id]
            src0 = float(b.source_start_s or 0.0)
            lo, hi = a.start_s + src0, a.end_s + src0
            for i, ov in enumerate(overlays):
                if a.category in ov["labels"] and lo <= ov["end_s"] + 2 and hi >= ov["start_s"] - 2:
                    screen_lat.append(a.created_ts - (srv.started_ts + ov["start_s"]))
                    screen_hit.add((i, a.category))
        screen_labelled = {(i, c) for i, ov in enumerate(overlays) for c in ov["labels"] if c != "clean"}
        labelled = {(sp["id"], c) for sp in spans for c in sp["labels"] if c != "clean"}
        series = [v for _, v in lags[sid]]
        half = len(series) // 2
        by_stream[sid] = {
            "alerts": len(mine),
            "screen_visual_alerts": len(screen),
            "screen_recall": round(len(screen_hit) / len(screen_labelled), 3)
            if screen and screen_labelled
            else None,
            "screen_latency_from_appearance_s": [round(x, 2) for x in sorted(screen_lat)],
            "true_positive": tp,
            "false_positive": fp,
            "recall": round(len(hit_spans) / max(1, len(labelled)), 3),
            "missed": sorted(f"{i}:{c}" for i, c in labelled - hit_spans),
            "latency_p50_s": round(pct(tp_lat, 0.5), 2),
            "latency_p95_s": round(pct(tp_lat, 0.95), 2),
            "latency_all_p50_s": round(pct(lat, 0.5), 2),
            "latency_all_p95_s": round(pct(lat, 0.95), 2),
            "transcript_final_p50_s": round(pct(commit_lat, 0.5), 2),
            "alert_stored_after_transcript_p50_s": round(pct(store_lat, 0.5), 2),
            "ingest_delay_s": [
                round(b.started_ts - (srv.started_ts + float(b.source_start_s or 0)), 2)
                for b in broadcasts.values()
                if b.stream_id == sid and b.started_ts
            ],
            "after_ingest_p50_s": round(pct(asr_part, 0.5), 2),
            "after_ingest_p95_s": round(pct(asr_part, 0.95), 2),
            "max_asr_lag_s": round(max(series, default=float("nan")), 2),
            "max_lag_first_half_s": round(max(series[:half], default=float("nan")), 2),
            "max_lag_second_half_s": round(max(series[half:], default=float("nan")), 2),
            "mean_lag_s": round(statistics.fmean(series), 2) if series else None,
            "mean_lag_by_quarter_s": [
                round(statistics.fmean(q), 2) if q else None
                for q in (series[k * len(series) // 4 : (k + 1) * len(series) // 4] for k in range(4))
            ],
            "broadcasts": sum(1 for b in broadcasts.values() if b.stream_id == sid),
        }
        all_lat += lat
        all_tp_lat += tp_lat
    result = {
        "streams": args.streams,
        "media": str(args.media.name),
        "loops": args.loops,
        "hls_time_s": args.hls_time,
        "hls_live_edge": args.hls_live_edge,
        "hls_playlist_reload_s": args.reload,
        "live_asr": cfg.live_asr.model_dump(mode="json"),
        "asr_beam": cfg.live_asr_config().beam_size,
        "latency_p50_s": round(pct(all_tp_lat, 0.5), 2),
        "latency_p95_s": round(pct(all_tp_lat, 0.95), 2),
        "latency_all_alerts_p50_s": round(pct(all_lat, 0.5), 2),
        "latency_all_alerts_p95_s": round(pct(all_lat, 0.95), 2),
        "per_stream": by_stream,
        "asr": status["asr"],
        "video": status.get("video"),
        "load_avg_during": round(statistics.fmean(loads), 2) if loads else None,
        "cpus": os.cpu_count(),
    }
    out = args.out or ROOT / "bench" / "out" / f"live_{args.streams}streams.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(result, indent=1, ensure_ascii=False))
    print(
        f"\nalert latency (matched alerts, n={len(all_tp_lat)}): p50 {result['latency_p50_s']} s, "
        f"p95 {result['latency_p95_s']} s   (all alerts n={len(all_lat)}: p50 "
        f"{result['latency_all_alerts_p50_s']} s, p95 {result['latency_all_alerts_p95_s']} s)"
    )
    for sid, r in by_stream.items():
        print(
            f"{sid}: max ASR lag {r['max_asr_lag_s']} s (first half {r['max_lag_first_half_s']} s, "
            f"second half {r['max_lag_second_half_s']} s; mean by quarter {r['mean_lag_by_quarter_s']}), "
            f"recall {r['recall']} (missed {', '.join(r['missed']) or 'none'}), alerts {r['alerts']}, "
            f"false {r['false_positive']}"
            + (
                f"; on screen: {r['screen_visual_alerts']} alerts, recall {r['screen_recall']}, "
                f"latency from appearance {r['screen_latency_from_appearance_s']} s"
                if args.video
                else ""
            )
        )
    print(f"load average during the run: {result['load_avg_during']} on {os.cpu_count()} CPUs; data in {tmp}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
