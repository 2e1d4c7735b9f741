"""Live ASR alone, replayed on a simulated clock: latency, recall, CER and pass cost of live settings.

    python bench/bench_live_asr.py                                  # broadcast_0, the monitor's defaults
    python bench/bench_live_asr.py --set trim_encoder=false         # any live_asr field, repeatable
    python bench/bench_live_asr.py --compare trim_encoder=false,true  # variants in one run (alternating)

The broadcast's audio "arrives" in blocks of `--arrival` seconds at the moment it is spoken: the
recorder's files grow packet by packet and the monitor tails them (use `--arrival 2` for audio that comes
in whole 2 s HLS segments). One `LiveTranscript` is driven the way the monitor's ASR worker drives it: a
pass as soon as `wants_pass()`, and the clock moves on by each pass's measured wall time (times
`--load`, to model a CPU shared with ingest). Audio is never waited for in real time, so a run costs
only the CPU of its passes; ingest, HLS and the database are left out (bench/bench_live.py measures
the whole monitor).

Per labelled line: **transcript latency** = when the utterance holding the line's end was committed −
the line's end; **alert latency** = when the first utterance whose rules fire the line's category was
committed − the line's end. Recall/precision count (line, category) pairs as tools/score.py does
(2 s slack). CER is over the whole broadcast with numerals made Arabic on both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import cn2an
import numpy as np
from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_live import pct  # noqa: E402  (this folder is on sys.path: the script's own)

from app.monitor import live_transcriber  # noqa: E402
from app.monitor_config import MonitorConfig  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.normalize import compact_text  # noqa: E402
from asr.streaming import SAMPLE_RATE, LiveTranscript  # noqa: E402
from asr.types import Utterance  # noqa: E402
from detectors.engine import RuleHolder  # noqa: E402

SLACK_S = 2.0


def _arabic(text: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(cn2an.transform(text, "cn2an"))


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def replay(
    transcriber: Any, cfg: MonitorConfig, audio: np.ndarray, *, arrival_s: float, load: float
) -> tuple[list[tuple[float, Utterance]], list[tuple[float, float]]]:
    """(commit time, utterance) in order, and (pass wall time, window length) per pass."""
    lt = LiveTranscript("bench", cfg.live_asr.options())
    block = max(1, round(arrival_s * SAMPLE_RATE))
    total = audio.shape[0]
    fed = 0
    now = 0.0
    out: list[tuple[float, Utterance]] = []
    passes: list[tuple[float, float]] = []
    while not lt.exhausted:
        while fed < total and (fed + block) / SAMPLE_RATE <= now + 1e-9:
            lt.add_audio(fed / SAMPLE_RATE, audio[fed : fed + block])
            fed += block
        if fed >= total and not lt.final:
            lt.add_audio(fed / SAMPLE_RATE, audio[fed:total]) if fed < total else None
            lt.finish()
        if not lt.wants_pass():
            now = (fed + block) / SAMPLE_RATE  # idle until the next block arrives
            continue
        t0 = time.perf_counter()
        res = lt.step(transcriber)
        took = (time.perf_counter() - t0) * load
        now += took
        passes.append((took, res.window_end_s - res.window_start_s))
        out.extend((now, u) for u in res.utterances)
    return out, passes


def score(
    committed: list[tuple[float, Utterance]], spans: list[dict[str, Any]], holder: RuleHolder
) -> dict[str, Any]:
    rules = holder.maybe_reload()
    hits: list[tuple[float, str, float, float]] = []  # (commit time, category, start, end)
    for t, u in committed:
        for cat in {d.category for d in rules.detect(u)}:
            hits.append((t, "vulgar" if cat.startswith("vulgar") else cat, u.start_s, u.end_s))

    def near(s: dict[str, Any], a: float, b: float) -> bool:
        return a <= s["end_s"] + SLACK_S and b >= s["start_s"] - SLACK_S

    transcript_lat: list[float] = []
    for s in spans:
        ts = [t for t, u in committed if u.end_s >= s["end_s"] - 0.5 and near(s, u.start_s, u.end_s)]
        if ts:
            transcript_lat.append(min(ts) - s["end_s"])
    alert_lat: list[float] = []
    pairs = [(s, c) for s in spans for c in s["labels"] if c != "clean"]
    missed = []
    for s, c in pairs:
        ts = [t for t, cat, a, b in hits if cat == c and near(s, a, b)]
        if ts:
            alert_lat.append(min(ts) - s["end_s"])
        else:
            missed.append(f"{s['id']}:{c}")
    false = [
        (round(a, 1), cat)
        for _t, cat, a, b in hits
        if not any(cat in s["labels"] and near(s, a, b) for s in spans)
    ]
    ref = "".join(compact_text(_arabic(s["text"])) for s in spans)
    hyp = "".join(compact_text(_arabic(u.text)) for _t, u in committed)
    return {
        "transcript_latency": {"p50": pct(transcript_lat, 0.5), "p95": pct(transcript_lat, 0.95)},
        "alert_latency": {
            "p50": pct(alert_lat, 0.5),
            "p95": pct(alert_lat, 0.95),
            "max": max(alert_lat, default=float("nan")),
        },
        "recall": len(alert_lat) / len(pairs) if pairs else float("nan"),
        "missed": missed,
        "false_hits": false,
        "cer": Levenshtein.distance(ref, hyp) / len(ref),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audio", nargs="?", type=Path, default=ROOT / "examples/corpus/broadcast_0.flac")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a live_asr field")
    ap.add_argument(
        "--compare", default="", metavar="FIELD=V1,V2", help="run each value of one field, alternating"
    )
    ap.add_argument("--rounds", type=int, default=1, help="passes over the variants (best p95 is shown)")
    ap.add_argument("--arrival", type=float, default=0.1, help="seconds of audio per arriving block")
    ap.add_argument("--load", type=float, default=1.0, help="multiply pass times (a shared CPU)")
    ap.add_argument("--show", action="store_true", help="print each committed utterance")
    args = ap.parse_args()

    truth = json.loads(args.audio.with_suffix(".json").read_text(encoding="utf-8"))
    spans = truth["spans"]
    audio = load_audio(args.audio)
    base = dict(kv.split("=", 1) for kv in args.set)
    variants: list[dict[str, Any]] = [{k: _value(v) for k, v in base.items()}]
    if args.compare:
        field, values = args.compare.split("=", 1)
        variants = [{**variants[0], field: _value(v)} for v in values.split(",")]

    results: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(variants))}
    for _round in range(args.rounds):
        for i, live in enumerate(variants):
            cfg = MonitorConfig.model_validate(
                {"streams": [{"id": "bench", "url": "hls://127.0.0.1/bench.m3u8"}], "live_asr": live}
            )
            transcriber = live_transcriber(cfg)
            holder = RuleHolder(cfg.rule_dirs(), min_interval_s=3600)
            c0 = time.process_time()
            committed, passes = replay(transcriber, cfg, audio, arrival_s=args.arrival, load=args.load)
            cpu = time.process_time() - c0
            r = score(committed, spans, holder)
            took = [p for p, _w in passes]
            r.update(
                variant=live,
                passes=len(passes),
                pass_mean_s=statistics.fmean(took),
                pass_p95_s=pct(took, 0.95),
                window_mean_s=statistics.fmean(w for _p, w in passes),
                cpu_s=cpu,
                audio_s=audio.shape[0] / SAMPLE_RATE,
            )
            results[i].append(r)
            if args.show:
                for t, u in committed:
                    print(f"  {u.start_s:7.2f}-{u.end_s:7.2f} @ {t:7.2f}  {u.text}")
            print(
                f"{json.dumps(live, ensure_ascii=False)}: alert p50 {r['alert_latency']['p50']:.2f} s "
                f"p95 {r['alert_latency']['p95']:.2f} s max {r['alert_latency']['max']:.2f} s | "
                f"transcript p50 {r['transcript_latency']['p50']:.2f} p95 {r['transcript_latency']['p95']:.2f} | "
                f"recall {r['recall']:.3f} false {len(r['false_hits'])} missed {r['missed']} | CER {r['cer']:.3f} | "
                f"{r['passes']} passes, mean {r['pass_mean_s']:.2f} s (p95 {r['pass_p95_s']:.2f}), "
                f"window {r['window_mean_s']:.1f} s, CPU {r['cpu_s']:.0f} s for {r['audio_s']:.0f} s audio",
                flush=True,
            )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_asr.json").write_text(
        json.dumps({str(k): v for k, v in results.items()}, ensure_ascii=False, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
