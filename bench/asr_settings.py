"""Compare faster-whisper settings on a corpus broadcast: character error rate, segmentation, time.

    python bench/asr_settings.py examples/corpus/broadcast_0.flac [--variants a,b,...] [--threads 2]

CER = Levenshtein distance / reference length, over the whole broadcast, after traditional→simplified
and removing punctuation and spaces (rapidfuzz). "lines/utt" checks segmentation: how many utterances
overlap more than one reference line (merged lines) and how many lines are split over several
utterances. "trad" counts characters that the t2s step changed, i.e. how often Whisper wrote traditional
script. The reference is the `spans` of the matching broadcast_<n>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cn2an
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.audio import load_audio
from asr.config import AsrConfig, VadConfig
from asr.normalize import compact_text, to_simplified
from asr.transcriber import WhisperTranscriber, _SpeechMap


@dataclass
class Variant:
    name: str
    cfg: dict[str, Any]
    # When set, call faster-whisper directly with these arguments (a plain-usage reference point).
    direct: dict[str, Any] | None = None


def variants() -> list[Variant]:
    no_prompt = {"initial_prompt": None}
    return [
        Variant(
            "faster-whisper defaults (b5, vad, cond. on prev.)",
            {},
            direct={"beam_size": 5, "vad_filter": True},
        ),
        Variant("b5 prompt merge-vad500", {"beam_size": 5}),
        Variant("b5 noprompt merge-vad500", {"beam_size": 5, **no_prompt}),
        Variant("b1 prompt merge-vad500", {"beam_size": 1}),
        Variant("b1 noprompt merge-vad500", {"beam_size": 1, **no_prompt}),
        Variant("b5 prompt merge-vad500 cond-prev", {"beam_size": 5, "condition_on_previous_text": True}),
        Variant("b5 prompt clips-vad500", {"beam_size": 5, "vad_mode": "clips"}),
        Variant("b5 prompt merge-vad300", {"beam_size": 5, "vad": VadConfig(min_silence_duration_ms=300)}),
        Variant("b5 prompt merge-vad1000", {"beam_size": 5, "vad": VadConfig(min_silence_duration_ms=1000)}),
        Variant("b1 prompt merge-vad1000", {"beam_size": 1, "vad": VadConfig(min_silence_duration_ms=1000)}),
        Variant("b5 prompt merge-vad2000", {"beam_size": 5, "vad": VadConfig(min_silence_duration_ms=2000)}),
        Variant("b5 prompt novad", {"beam_size": 5, "vad_filter": False}),
        Variant("b5 prompt hotwords merge-vad500", {"beam_size": 5, "hotwords": "家人们 直播间 原价 下单"}),
    ]


def _arabic(text: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(cn2an.transform(text, "cn2an"))


def run(
    transcriber: WhisperTranscriber,
    base: AsrConfig,
    audio: Any,
    variant: Variant,
    spans: list[dict[str, Any]],
) -> dict[str, Any]:
    cfg = base.model_copy(update=variant.cfg)
    transcriber.cfg = cfg
    t0 = time.perf_counter()
    c0 = time.process_time()
    if variant.direct is not None:
        segments, _ = transcriber._model.transcribe(
            audio, language="zh", word_timestamps=True, **variant.direct
        )
        utts = list(transcriber._utterances(segments, _SpeechMap([(0.0, len(audio) / 16000)]), 0.0))
    else:
        utts = list(transcriber.transcribe(audio))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0

    ref = "".join(compact_text(s["text"]) for s in spans)
    hyp = "".join(compact_text(u.text) for u in utts)
    cer = Levenshtein.distance(ref, hyp) / len(ref)
    # Whisper writes 999 where the script says 九百九十九: compare with numerals made Arabic on both sides.
    ref_n = "".join(compact_text(_arabic(s["text"])) for s in spans)
    hyp_n = "".join(compact_text(_arabic(u.text)) for u in utts)
    cer_n = Levenshtein.distance(ref_n, hyp_n) / len(ref_n)
    raw = "".join(u.raw_text for u in utts)
    trad = sum(1 for a, b in zip(raw, to_simplified(raw), strict=False) if a != b)
    merged = sum(
        1
        for u in utts
        if sum(1 for s in spans if min(u.end_s, s["end_s"]) - max(u.start_s, s["start_s"]) > 0.3) > 1
    )
    split = sum(
        1
        for s in spans
        if sum(1 for u in utts if min(u.end_s, s["end_s"]) - max(u.start_s, s["start_s"]) > 0.3) > 1
    )
    return {
        "variant": variant.name,
        "time_s": round(elapsed, 1),
        "cpu_s": round(cpu, 1),
        "cer": round(cer, 4),
        "cer_n": round(cer_n, 4),
        "utterances": len(utts),
        "merged": merged,
        "split": split,
        "trad": trad,
        "texts": [(u.start_s, u.end_s, u.text) for u in utts],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio", type=Path)
    ap.add_argument("--variants", default="", help="comma-separated substrings of variant names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", action="store_true", help="print each variant's utterances")
    args = ap.parse_args()
    truth = json.loads(args.audio.with_suffix(".json").read_text(encoding="utf-8"))
    spans = truth["spans"]
    audio = load_audio(args.audio)
    t0 = time.perf_counter()
    base = AsrConfig(cpu_threads=args.threads)
    transcriber = WhisperTranscriber(base)
    print(f"model load {time.perf_counter() - t0:.1f}s, audio {len(audio) / 16000:.1f}s", flush=True)
    wanted = [w for w in args.variants.split(",") if w]
    print(
        "| variant | wall s | CPU s | CER | CER (numerals normalized) | utterances | merged | split | trad chars |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in variants():
        if wanted and not any(w in variant.name for w in wanted):
            continue
        r = run(transcriber, base, audio, variant, spans)
        print(
            f"| {r['variant']} | {r['time_s']} | {r['cpu_s']} | {r['cer']:.3f} | {r['cer_n']:.3f} | {r['utterances']} | {r['merged']} | "
            f"{r['split']} | {r['trad']} |",
            flush=True,
        )
        if args.show:
            for start, end, text in r["texts"]:
                print(f"    {start:7.2f} {end:7.2f} {text}")


if __name__ == "__main__":
    main()
