"""The real embedded Whisper base model on corpus clips (CPU, int8): what users actually get."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cn2an
import numpy as np
import pytest
from rapidfuzz import fuzz

from asr import AsrConfig, WhisperTranscriber, load_audio
from asr.normalize import compact_text, to_simplified

pytestmark = pytest.mark.model

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def clip_text(clip_id: str) -> str:
    for line in (CORPUS / "clips.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["id"] == clip_id:
            return str(row["text"])
    raise KeyError(clip_id)


def comparable(text: str) -> str:
    """Whisper writes 999 where the script says 九百九十九: compare with Arabic numerals on both sides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compact_text(str(cn2an.transform(text, "cn2an")))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A fresh cache: these tests also cover first-use assembly of the embedded model.
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def transcriber(cache_dir: Path) -> WhisperTranscriber:
    return WhisperTranscriber(AsrConfig(cache_dir=cache_dir, cpu_threads=2))


def test_price_line_is_recognized_in_simplified_with_timed_words(transcriber: WhisperTranscriber) -> None:
    audio = load_audio(CORPUS / "clips" / "d02.flac")
    duration = len(audio) / 16_000
    offset = 1000.0
    utterances = list(transcriber.transcribe(audio, offset_s=offset))
    assert utterances, "no speech recognized in a clear clip"
    text = "".join(u.text for u in utterances)

    assert to_simplified(text) == text, f"traditional characters left in {text!r}"
    expected = clip_text("d02")  # 这个精华液原价九百九十九元,今天直播间只要一百九十九元。
    score = fuzz.ratio(comparable(text), comparable(expected))
    assert score >= 60, f"{text!r} vs {expected!r}: {score:.0f}"
    assert fuzz.partial_ratio("只要199元", comparable(text)) >= 70, text

    previous_start = offset
    for u in utterances:
        assert u.text == "".join(w.text for w in u.words)
        assert u.raw_text and u.avg_logprob < 0 and 0 <= u.no_speech_prob <= 1
        for w in u.words:
            assert offset - 0.01 <= w.start_s <= w.end_s <= offset + duration + 0.5, w
            assert w.start_s >= previous_start - 0.01, "word times go backwards"
            previous_start = w.start_s
        assert u.start_s == u.words[0].start_s and u.end_s == u.words[-1].end_s
    assert [u.index for u in utterances] == list(range(len(utterances)))


def test_lines_separated_by_pauses_become_separate_utterances(transcriber: WhisperTranscriber) -> None:
    # Two corpus lines with a 1.2 s pause between them, as in a broadcast.
    a, b = load_audio(CORPUS / "clips" / "d01.flac"), load_audio(CORPUS / "clips" / "d03.flac")
    gap = np.zeros(int(1.2 * 16_000), dtype=np.float32)
    utterances = list(transcriber.transcribe(np.concatenate([a, gap, b])))
    boundary = len(a) / 16_000 + 0.6
    assert not [u for u in utterances if u.start_s < boundary - 0.3 and u.end_s > boundary + 0.3], (
        "an utterance spans the pause between two lines"
    )
    first = "".join(u.text for u in utterances if u.end_s <= boundary)
    second = "".join(u.text for u in utterances if u.start_s >= boundary)
    assert fuzz.ratio(comparable(first), comparable(clip_text("d01"))) >= 60, first
    assert fuzz.ratio(comparable(second), comparable(clip_text("d03"))) >= 60, second


def test_room_noise_without_speech_yields_nothing(transcriber: WhisperTranscriber) -> None:
    rng = np.random.default_rng(7)
    t = np.arange(8 * 16_000) / 16_000
    hum = 0.01 * np.sin(2 * np.pi * 110 * t) + 0.003 * rng.standard_normal(t.size)
    kept_before = transcriber.stats.kept
    assert list(transcriber.transcribe(hum.astype(np.float32))) == []
    assert transcriber.stats.kept == kept_before


def test_silence_without_vad_yields_nothing(cache_dir: Path) -> None:
    # With VAD off, Whisper itself sees the silence and loops or reads back its prompt; the filter drops
    # what it makes. Greedy decoding only, as live passes decode: the temperature fallback would take
    # about a minute of CPU over 15 s of silence and ends in the same nothing.
    cfg = AsrConfig(cache_dir=cache_dir, cpu_threads=2, vad_filter=False, temperatures=(0.0,))
    t = WhisperTranscriber(cfg)
    assert list(t.transcribe(np.zeros(15 * 16_000, dtype=np.float32))) == []
    assert t.stats.kept == 0
    assert t.stats.segments >= 1 and sum(t.stats.dropped.values()) == t.stats.segments
