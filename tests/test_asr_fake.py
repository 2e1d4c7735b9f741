"""FakeTranscriber: replays scripted lines by broadcast time, keeps the text/words invariant."""

from __future__ import annotations

import numpy as np
import pytest

from asr.fake import FakeTranscriber, utterance_from_text
from asr.transcriber import Transcriber
from asr.types import Utterance, Word


def seconds(n: float) -> np.ndarray:
    return np.zeros(int(n * 16_000), dtype=np.float32)


def test_lines_are_replayed_once_across_consecutive_windows() -> None:
    fake = FakeTranscriber.from_lines(
        [(1.0, 3.0, "原价九百九十九"), (6.5, 8.0, "今天只要一百九十九"), (12.0, 13.0, "好")]
    )
    t: Transcriber = fake
    first = list(t.transcribe(seconds(5), offset_s=0.0))
    second = list(t.transcribe(seconds(5), offset_s=5.0, prompt="原价"))
    third = list(t.transcribe(seconds(5), offset_s=10.0))
    assert [u.text for u in first] == ["原价九百九十九"]
    assert [u.text for u in second] == ["今天只要一百九十九"]
    assert [(u.index, u.text) for u in third] == [(0, "好")]
    assert [(c.offset_s, c.duration_s, c.prompt) for c in fake.calls] == [
        (0.0, 5.0, None),
        (5.0, 5.0, "原价"),
        (10.0, 5.0, None),
    ]


def test_words_span_the_line_and_concatenate_to_text() -> None:
    u = utterance_from_text(10.0, 12.0, "最 低价")
    assert u.text == "最低价" == "".join(w.text for w in u.words)
    assert u.words[0].start_s == 10.0 and u.words[-1].end_s == 12.0
    assert u.char_times(1, 3) == (u.words[1].start_s, 12.0)


def test_script_breaking_the_invariant_is_refused() -> None:
    bad = Utterance(index=0, start_s=0, end_s=1, text="abc", words=(Word("ab", 0, 1),))
    with pytest.raises(ValueError, match="concatenation"):
        FakeTranscriber([bad])
