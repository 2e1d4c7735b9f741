"""A site's own ASR backend (`asr.backend: package.module:factory`): built through build_transcriber,
wrapped with the real Silero VAD gate and the text hallucination filter; bad names fail clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from asr.audio import SAMPLE_RATE, load_audio
from asr.build import build_transcriber
from asr.config import AsrConfig
from asr.errors import ModelError
from asr.types import Utterance
from asr.wrappers import HallucinationGate, SpeechGate

CLIP = Path(__file__).resolve().parents[1] / "examples" / "corpus" / "clips"

CALLS: list[tuple[float, float]] = []  # (offset_s, duration_s) of every call the backend got


class EchoBackend:
    """A stand-in recognizer: one utterance per call covering the audio it was given; its text says
    how long that audio was, or is a subtitle credit when the audio is shorter than a second."""

    def __init__(self, credit: bool) -> None:
        self.credit = credit

    def transcribe(self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None) -> Iterator[Utterance]:
        dur = audio.shape[0] / SAMPLE_RATE
        CALLS.append((offset_s, dur))
        yield Utterance(0, offset_s, offset_s + dur, f"说了{dur:.1f}秒的话")
        if self.credit:
            yield Utterance(1, offset_s + dur, offset_s + dur, "字幕由Amara.org社区提供")


def build(cfg: AsrConfig, live: Any) -> EchoBackend:
    return EchoBackend(credit=True)


def build_broken(cfg: AsrConfig, live: Any) -> object:
    return object()


def _speech_between_silences() -> tuple[np.ndarray, float, float]:
    speech = load_audio(next(iter(sorted(CLIP.glob("*.flac")))))
    pad = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    return np.concatenate([pad, speech, pad]), 3.0, 3.0 + speech.shape[0] / SAMPLE_RATE


def test_site_backend_is_wrapped_with_vad_and_the_hallucination_filter() -> None:
    t = build_transcriber(AsrConfig(backend=f"{__name__}:build"))
    assert isinstance(t, SpeechGate) and isinstance(t.inner, HallucinationGate)
    audio, lo, hi = _speech_between_silences()
    CALLS.clear()
    utts = list(t.transcribe(audio, offset_s=100.0))
    # only speech reached the backend, at its place in the audio
    assert CALLS, "the backend was never called"
    assert all(100.0 + lo - 0.6 <= off and off + d <= 100.0 + hi + 0.6 for off, d in CALLS), CALLS
    assert sum(d for _, d in CALLS) < (hi - lo) + 1.5
    # the credit line each call produced was dropped; the real lines kept, indexed from 0
    assert [u.index for u in utts] == list(range(len(CALLS)))
    assert all("Amara" not in u.text for u in utts) and t.inner.dropped == len(CALLS)


def test_silence_never_reaches_the_backend() -> None:
    t = build_transcriber(AsrConfig(backend=f"{__name__}:build"))
    CALLS.clear()
    assert list(t.transcribe(np.zeros(5 * SAMPLE_RATE, dtype=np.float32))) == []
    assert CALLS == []


def test_without_vad_the_backend_gets_the_whole_window() -> None:
    t = build_transcriber(AsrConfig(backend=f"{__name__}:build", vad_filter=False))
    assert isinstance(t, HallucinationGate)
    CALLS.clear()
    utts = list(t.transcribe(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), offset_s=5.0))
    assert CALLS == [(5.0, 2.0)] and [u.text for u in utts] == ["说了2.0秒的话"]


@pytest.mark.parametrize("name", ["sherpa", "a b:c", "mod:", ":factory", "mod:fac-tory"])
def test_bad_backend_names_are_refused_by_the_config(name: str) -> None:
    with pytest.raises(ValidationError, match="backend"):
        AsrConfig(backend=name)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("no_such_module_livewatch:build", "cannot be imported"),
        (f"{__name__}:no_such_factory", "cannot be imported"),
        (f"{__name__}:build_broken", "no transcribe"),
    ],
)
def test_backend_that_cannot_be_built_is_a_model_error_naming_it(name: str, says: str) -> None:
    with pytest.raises(ModelError, match=says) as err:
        build_transcriber(AsrConfig(backend=name))
    assert name in str(err.value)
