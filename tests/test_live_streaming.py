"""Sliding-window live ASR (asr/streaming.py) with fake transcribers: agreement, pauses, backlog, resume."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from live_helpers import SR, ToneScript, ToneTranscriber

from asr.streaming import LiveTranscript, StreamingOptions, agreed_prefix_chars
from asr.types import Utterance, Word

SCRIPT = ToneScript.from_corpus(["d28", "d01", "d05", "d14", "d33", "d26", "d09"])
FULL = ["".join(c for c in t if c.isalnum()) for t in SCRIPT.texts]


def run_live(
    lt: LiveTranscript, audio: np.ndarray, tr: object, chunk_s: float = 0.25
) -> list[tuple[Utterance, float]]:
    """Feed audio chunk by chunk as if live; step whenever a pass is due. (utterance, audio end at emit)."""
    out: list[tuple[Utterance, float]] = []
    chunk = int(chunk_s * SR)
    pos = 0
    while True:
        if pos < audio.shape[0]:
            lt.add_audio(lt.audio_end_s, audio[pos : pos + chunk])
            pos += chunk
        elif not lt.final:
            lt.finish()
        while lt.wants_pass():
            res = lt.step(tr)  # type: ignore[arg-type]
            out.extend((u, lt.audio_end_s) for u in res.utterances)
            if lt.exhausted:
                return out


def test_every_line_once_in_order_with_word_times() -> None:
    tr = ToneTranscriber(SCRIPT)
    got = run_live(LiveTranscript("b", StreamingOptions()), SCRIPT.audio(), tr)
    assert [u.text for u, _ in got] == FULL
    assert [u.index for u, _ in got] == list(range(len(FULL)))
    for (u, _), line in zip(got, SCRIPT.lines(), strict=True):
        assert u.start_s == pytest.approx(line.start_s, abs=0.1)
        assert u.end_s == pytest.approx(line.end_s, abs=0.1)
        assert u.text == "".join(w.text for w in u.words)


def test_an_utterance_is_committed_soon_after_the_speaker_pauses() -> None:
    opts = StreamingOptions(min_step_s=0.5, pause_s=0.8)
    got = run_live(LiveTranscript("b", opts), SCRIPT.audio(), ToneTranscriber(SCRIPT))
    delays = [emitted_at - u.end_s for u, emitted_at in got[:-1]]  # the last one is closed by finish()
    # the pause must be heard, then at most one step of new audio (plus one chunk of feeding)
    assert max(delays) <= opts.pause_s + opts.min_step_s + 0.25 + 0.1, delays


def test_windows_stay_short_because_the_buffer_is_trimmed_at_finished_utterances() -> None:
    tr = ToneTranscriber(SCRIPT)
    run_live(LiveTranscript("b", StreamingOptions()), SCRIPT.audio(), tr)
    longest = max(d for _, d in tr.calls)
    # a line lasts 2.5 s and lines are 5 s apart: a window never needs much more than one line
    assert longest < SCRIPT.period_s + 1.5, longest


def test_backlog_is_worked_off_in_full_windows_and_nothing_is_lost_or_doubled() -> None:
    tr = ToneTranscriber(SCRIPT)
    opts = StreamingOptions(max_window_s=8.0)
    lt = LiveTranscript("b", opts)
    lt.add_audio(0.0, SCRIPT.audio())  # 35 s at once: ASR far behind
    got: list[Utterance] = []
    while lt.wants_pass():
        got.extend(lt.step(tr).utterances)
    assert max(d for _, d in tr.calls) <= opts.max_window_s + 1e-6
    assert lt.processed_end_s == pytest.approx(lt.audio_end_s)
    lt.finish()
    while lt.wants_pass():
        got.extend(lt.step(tr).utterances)
    assert [u.text for u in got] == FULL
    assert lt.done_s == pytest.approx(SCRIPT.duration_s)


class Scripted:
    """Returns prepared hypotheses, one per call: each a list of (text, start, end) words in one segment."""

    def __init__(self, passes: Sequence[Sequence[tuple[str, float, float]]]) -> None:
        self.passes = list(passes)
        self.n = 0

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        words = self.passes[min(self.n, len(self.passes) - 1)]
        self.n += 1
        if not words:
            return iter(())
        ws = tuple(Word(t, s, e) for t, s, e in words)
        return iter([Utterance(0, ws[0].start_s, ws[-1].end_s, "".join(w.text for w in ws), ws)])


def _tone(seconds: float) -> np.ndarray:
    return np.full(int(seconds * SR), 0.1, dtype=np.float32)


def test_words_at_the_growing_edge_wait_for_two_passes_to_agree() -> None:
    tr = Scripted(
        [
            [("全网", 0.0, 0.5), ("最底", 0.5, 0.9)],  # pass 1: nothing agreed yet
            [("全网", 0.0, 0.5), ("最低", 0.5, 0.9), ("价", 0.9, 1.1)],  # agrees on 全网 only
            [("全网", 0.0, 0.5), ("最低", 0.5, 0.9), ("价", 0.9, 1.1), ("今天", 1.1, 1.5)],  # 最低价 agreed
        ]
    )
    lt = LiveTranscript("b", StreamingOptions(min_step_s=0.5, pause_s=5.0))
    lt.add_audio(0.0, _tone(1.0))
    assert lt.step(tr).committed_words == 0
    lt.add_audio(1.0, _tone(0.5))
    r2 = lt.step(tr)
    assert (r2.committed_words, r2.pending_words) == (1, 2)
    lt.add_audio(1.5, _tone(0.5))
    r3 = lt.step(tr)
    assert (r3.committed_words, r3.pending_words) == (2, 1)  # 最低 and 价; 今天 still waits
    lt.finish()
    final = lt.step(tr)
    assert [u.text for u in final.utterances] == ["全网最低价今天"]


def test_a_pause_in_the_window_finalizes_words_before_it_without_a_second_pass() -> None:
    tr = Scripted([[("仅剩", 0.0, 0.5), ("三单", 0.5, 1.0)]])
    lt = LiveTranscript("b", StreamingOptions(pause_s=0.8))
    lt.add_audio(0.0, np.concatenate([_tone(1.0), np.zeros(SR, dtype=np.float32)]))
    res = lt.step(tr)
    assert [u.text for u in res.utterances] == ["仅剩三单"]
    assert res.done_s == pytest.approx(1.0)  # trimmed at the end of the finished utterance


def test_holes_are_filled_with_silence_and_overlaps_dropped() -> None:
    lt = LiveTranscript("b")
    lt.add_audio(0.0, _tone(1.0))
    lt.add_audio(1.5, _tone(1.0))  # 0.5 s hole
    assert lt.audio_end_s == pytest.approx(2.5)
    lt.add_audio(2.0, _tone(1.0))  # half of it overlaps what is buffered
    assert lt.audio_end_s == pytest.approx(3.0)


def test_resuming_from_a_watermark_continues_indexes_and_times() -> None:
    tr = ToneTranscriber(SCRIPT)
    start = SCRIPT.period_s * 3  # lines 0-2 were stored by the previous run
    lt = LiveTranscript("b", StreamingOptions(), start_s=start, first_index=3, prompt=FULL[2])
    assert lt.prompt() == FULL[2]
    got = run_live(lt, SCRIPT.audio()[int(start * SR) :], tr)
    assert [u.index for u, _ in got] == list(range(3, len(FULL)))
    assert [u.text for u, _ in got] == FULL[3:]
    assert got[0][0].start_s == pytest.approx(SCRIPT.lines()[3].start_s, abs=0.1)


def test_the_prompt_is_the_tail_of_the_committed_text() -> None:
    tr = ToneTranscriber(SCRIPT)
    lt = LiveTranscript("b", StreamingOptions(prompt_chars=10))
    run_live(lt, SCRIPT.audio(), tr)
    assert lt.prompt() == "".join(FULL)[-10:]


def test_agreed_prefix_is_counted_in_characters_across_word_splits() -> None:
    assert agreed_prefix_chars(["全网最", "低价"], ["全网", "最低", "价格"]) == 5
    assert agreed_prefix_chars([], ["全网"]) == 0
    assert agreed_prefix_chars(["今天"], ["明天"]) == 0


def test_audio_after_finish_is_refused() -> None:
    lt = LiveTranscript("b")
    lt.finish()
    with pytest.raises(RuntimeError):
        lt.add_audio(0.0, _tone(0.1))


def test_an_utterance_closes_when_the_next_words_start_after_a_pause_before_they_are_agreed() -> None:
    tr = Scripted(
        [
            [("仅剩", 0.0, 0.5), ("三单", 0.5, 1.0)],
            [("仅剩", 0.0, 0.5), ("三单", 0.5, 1.0), ("史上", 1.7, 2.0)],  # the next line starts 0.7 s later
        ]
    )
    lt = LiveTranscript("b", StreamingOptions(pause_s=0.6, min_step_s=0.5))
    lt.add_audio(0.0, _tone(1.2))
    assert lt.step(tr).utterances == ()
    lt.add_audio(1.2, _tone(0.9))
    res = lt.step(tr)
    assert [u.text for u in res.utterances] == ["仅剩三单"] and res.pending_words == 1


class _BlankOnce:
    """Hears the line as the real model would, except that chosen passes come back empty (all dropped)."""

    def __init__(self, inner: ToneTranscriber, blank: set[int]) -> None:
        self.inner = inner
        self.blank = blank
        self.calls = 0

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        self.calls += 1
        out = list(self.inner.transcribe(audio, offset_s=offset_s, prompt=prompt))
        return iter(() if self.calls in self.blank else out)


@pytest.mark.parametrize("blank", [{2}, {3}, {2, 4}, {3, 5}])
def test_a_blank_pass_in_the_middle_of_a_line_loses_none_of_it(blank: set[int]) -> None:
    # passes 2, 3, ... run while the first line is being spoken: one of them hears nothing
    tr = _BlankOnce(ToneTranscriber(SCRIPT), blank)
    got = run_live(LiveTranscript("b", StreamingOptions(min_step_s=0.5)), SCRIPT.audio(), tr)
    assert [u.text for u, _ in got] == FULL
