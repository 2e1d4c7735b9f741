"""VAD and the hallucination filter as wrappers around any `Transcriber`.

The Whisper backend (asr/transcriber.py) runs both inside, because it can use Whisper's own scores
(no-speech probability, log-probability, compression ratio) and cut lines at the pauses it decodes
across. Any other backend (a site's `backend: package.module:factory`) gets the same two guards from
outside, built by `asr.build.build_transcriber`:

- `SpeechGate`: Silero VAD (the model faster-whisper ships, CPU, no download) finds the speech runs;
  only those reach the inner transcriber, each with its own offset, so silence and music are never
  decoded and no line spans a pause.
- `HallucinationGate`: drops utterances whose text alone marks them as hallucinated (subtitle
  credits, the prompt read back, one syllable repeated), the checks of `text_hallucination`.

Both are stateless between calls and add no threads: they are as thread-safe as the inner transcriber.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from asr.config import AsrConfig
from asr.types import Transcriber, Utterance

__all__ = ["HallucinationGate", "SpeechGate", "wrap_backend"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class SpeechGate:
    """Decode only the speech runs Silero VAD finds (see the module docstring)."""

    def __init__(self, inner: Transcriber, cfg: AsrConfig) -> None:
        self.inner = inner
        self.cfg = cfg

    def speech_runs(self, audio: np.ndarray) -> list[tuple[int, int]]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(**self.cfg.vad.model_dump())
        return [(c["start"], c["end"]) for c in get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)]

    def transcribe(self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None) -> Iterator[Utterance]:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        index = 0
        for start, end in self.speech_runs(audio):
            for u in self.inner.transcribe(audio[start:end], offset_s=offset_s + start / SAMPLE_RATE, prompt=prompt):
                yield replace(u, index=index)
                index += 1


class HallucinationGate:
    """Drop utterances the text checks of the hallucination filter reject (see the module docstring)."""

    def __init__(self, inner: Transcriber, cfg: AsrConfig) -> None:
        self.inner = inner
        self.cfg = cfg
        self.dropped = 0

    def transcribe(self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None) -> Iterator[Utterance]:
        from asr.transcriber import text_hallucination

        index = 0
        for u in self.inner.transcribe(audio, offset_s=offset_s, prompt=prompt):
            reason = text_hallucination(u.text, self.cfg)
            if reason is not None:
                self.dropped += 1
                logger.debug("dropped %.2f-%.2f s %r: %s", u.start_s, u.end_s, u.text, reason)
                continue
            yield replace(u, index=index)
            index += 1


def wrap_backend(inner: Transcriber, cfg: AsrConfig) -> Transcriber:
    """A site backend with the guards the config asks for: hallucination filter always, VAD when on."""
    gated: Transcriber = HallucinationGate(inner, cfg)
    return SpeechGate(gated, cfg) if cfg.vad_filter else gated
