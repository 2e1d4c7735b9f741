"""The trimmed Whisper encoder (asr/encoder.py): how much context a pass keeps, and the real model on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rapidfuzz import fuzz
from test_asr_whisper import clip_text, comparable

from asr import AsrConfig, WhisperTranscriber, load_audio
from asr.encoder import FULL_FRAMES, load_whisper_model, trimmed_frames
from asr.model import resolve_model

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def features(content_frames: int, batch: bool = False) -> np.ndarray:
    """Log-mel-like features: `content_frames` of audio, then pad_or_trim's exact zeros to 3000."""
    rng = np.random.default_rng(content_frames)
    f = np.zeros((80, FULL_FRAMES), dtype=np.float32)
    f[:, :content_frames] = rng.uniform(-1.5, 1.5, size=(80, content_frames))
    return f[None] if batch else f


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (430, 1000),  # 4.3 s + 3 s margin = 7.3 s, below the 10 s minimum
        (1000, 1300),  # 10 s + 3 s
        (1234, 1600),  # 15.34 s rounded up to whole seconds after the margin
        (2900, FULL_FRAMES),  # never more than given
        (0, 1000),  # nothing but padding: the minimum
    ],
)
def test_context_is_the_audio_plus_margin_rounded_up_at_least_the_minimum(
    content: int, expected: int
) -> None:
    n = trimmed_frames(features(content), margin_s=3.0, min_context_s=10.0, step_s=1.0)
    assert n == expected
    assert trimmed_frames(features(content, batch=True), margin_s=3.0, min_context_s=10.0, step_s=1.0) == n


def test_a_silent_stretch_inside_the_audio_is_not_taken_for_padding() -> None:
    f = features(2000)
    f[:, 500:1500] = -1.5  # digital silence as log-mel gives -1.5, not the padding's 0
    assert trimmed_frames(f, margin_s=0.0, min_context_s=1.0, step_s=1.0) == 2000


@pytest.mark.model
def test_trimmed_model_hears_a_line_like_the_full_one_and_encodes_less(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faster_whisper import WhisperModel

    cfg = AsrConfig(cache_dir=tmp_path / "cache", cpu_threads=2)
    path = resolve_model(cfg)
    model = load_whisper_model(path, device="cpu", compute_type="int8", cpu_threads=2, trim_encoder=True)
    encoded: list[int] = []
    inner = WhisperModel.encode

    def spy(self: Any, feats: np.ndarray) -> Any:
        out = inner(self, feats)
        encoded.append(int(out.shape[1]))
        return out

    monkeypatch.setattr(WhisperModel, "encode", spy)  # what the trimmed subclass hands on
    transcriber = WhisperTranscriber(cfg, model=model)
    audio = load_audio(CORPUS / "clips" / "d02.flac")
    text = "".join(u.text for u in transcriber.transcribe(audio))
    expected = clip_text("d02")  # 这个精华液原价九百九十九元,今天直播间只要一百九十九元。
    assert fuzz.ratio(comparable(text), comparable(expected)) >= 60, text
    assert fuzz.partial_ratio("只要199元", comparable(text)) >= 70, text
    # a ~5 s clip: 10 s of context (the minimum) = 500 encoder positions instead of Whisper's 1500
    assert encoded and max(encoded) <= 650, encoded
