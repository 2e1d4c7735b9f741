"""ASR output types.

`Utterance.text` is always the concatenation of its words' texts (when it has words), so a character
offset in the text maps to a word and therefore to a time. Times are `*_s`: seconds from the start of
the broadcast (or media file), never relative to an audio chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the protocol names the array type; importing this module must not load NumPy
    import numpy as np


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Utterance:
    """One line of transcript (speech) or one recognized caption (screen)."""

    index: int
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()
    source: str = "speech"  # "speech" | "screen"
    raw_text: str = ""  # before normalization, as the recognizer wrote it
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    meta: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    def char_times(self, start: int, end: int) -> tuple[float, float]:
        """Time span of characters [start, end) of `text`, located to the words that hold them."""
        if not self.words or end <= start:
            return self.start_s, self.end_s
        pos = 0
        first: Word | None = None
        last: Word | None = None
        for w in self.words:
            w_start, w_end = pos, pos + len(w.text)
            pos = w_end
            if w_end <= start:
                continue
            if w_start >= end:
                break
            if first is None:
                first = w
            last = w
        if first is None or last is None:
            return self.start_s, self.end_s
        return first.start_s, last.end_s


@dataclass(frozen=True, slots=True)
class TranscriptBatch:
    """Utterances one ASR pass committed, with the watermark they complete (ASR → writer → analysis).

    `done_s`: the transcript is complete up to here (nothing committed later starts before it);
    `final`: the broadcast's transcript is complete."""

    broadcast_id: str
    stream_id: str
    utterances: tuple[Utterance, ...]
    done_s: float
    final: bool


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 audio into utterances, lazily. The one transcriber protocol: the scan,
    the live sliding window (asr/streaming.py) and any backend (faster-whisper today) meet here."""

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        """Utterances in time order; times are `offset_s` + seconds into `audio`.

        `prompt` is extra context for the recognizer (e.g. the last committed text or product names).
        `Utterance.index` counts from 0 within one call.
        """
        ...
