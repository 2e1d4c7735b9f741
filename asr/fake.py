"""A scripted `Transcriber` for tests of later stages: no model, deterministic, instant.

The script is a list of utterances in broadcast time. Each `transcribe` call yields (re-indexed from 0)
those whose start falls inside the window the call covers, `[offset_s, offset_s + len(audio)/16 kHz)`,
so a worker that feeds consecutive media segments gets each scripted line once. Calls are recorded in
`calls`. Not thread-safe, like the real transcriber.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from asr.types import Utterance, Word

__all__ = ["FakeCall", "FakeTranscriber", "utterance_from_text"]

_SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class FakeCall:
    offset_s: float
    duration_s: float
    prompt: str | None


def utterance_from_text(start_s: float, end_s: float, text: str, *, index: int = 0) -> Utterance:
    """An utterance whose words are its characters, spread evenly over [start_s, end_s]."""
    if end_s < start_s:
        raise ValueError(f"end_s {end_s} is before start_s {start_s}")
    chars = [c for c in text if not c.isspace()]
    step = (end_s - start_s) / len(chars) if chars else 0.0
    words = tuple(
        Word(text=c, start_s=round(start_s + i * step, 3), end_s=round(start_s + (i + 1) * step, 3))
        for i, c in enumerate(chars)
    )
    return Utterance(
        index=index, start_s=start_s, end_s=end_s, text="".join(chars), words=words, raw_text=text
    )


class FakeTranscriber:
    """`Transcriber` that replays `script` (see module docstring)."""

    def __init__(self, script: Iterable[Utterance]) -> None:
        self.script: list[Utterance] = sorted(script, key=lambda u: (u.start_s, u.end_s))
        for u in self.script:
            if u.words and u.text != "".join(w.text for w in u.words):
                raise ValueError(f"scripted utterance text {u.text!r} is not the concatenation of its words")
        self.calls: list[FakeCall] = []

    @classmethod
    def from_lines(cls, lines: Sequence[tuple[float, float, str]]) -> FakeTranscriber:
        """Script from (start_s, end_s, text) triples, words made per character."""
        return cls(utterance_from_text(s, e, t) for s, e, t in lines)

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        duration_s = len(audio) / _SAMPLE_RATE
        self.calls.append(FakeCall(offset_s=offset_s, duration_s=duration_s, prompt=prompt))
        end_s = offset_s + duration_s
        window = [u for u in self.script if offset_s <= u.start_s < end_s]
        return (dataclasses.replace(u, index=i) for i, u in enumerate(window))
