"""Live ASR: a sliding window over the newest audio of one broadcast, committing agreed words.

Latency must not depend on how long the recorded files are, so live speech is not transcribed file by
file. Each broadcast keeps a buffer of 16 kHz audio from the last point that is fully handled; every
pass decodes the buffer's first `max_window_s` seconds with the text just before it as the prompt
(whisper_streaming's design). Words are committed by *local agreement*: at the live edge a word is
final once two consecutive passes over the growing audio produced it identically (compared character
by character, since Chinese words are split differently from pass to pass), or once the window holds
a pause of `pause_s` after it (the speaker stopped: the words before are no longer at the growing
edge, and waiting for a second pass would only add latency). Behind the live edge (a
backlog after a restart or when ASR fell behind) and at the end of a broadcast the audio after the
window is already known, so every hypothesis segment but the one the window cuts is final at once.

Committed words form utterances: one ends at a pause of `pause_s`, where the recognizer starts a new
segment (a VAD pause or a sentence end), after `max_utterance_s`, or at the end of the audio. Audio
before the end of the last finished utterance is dropped from the buffer, so windows stay short in
normal speech; that point is the broadcast's ASR watermark (`done_s`), from which a restarted
monitor resumes.

Concurrency contract: one `LiveTranscript` per broadcast. `add_audio` and `finish` may be called from
the audio reader's thread while the one ASR worker calls `step` (they share a lock around the audio
buffer only). All other state is the ASR worker's: `step`, `wants_pass` and the read-only properties
are meant for that thread alone. The transcriber passed to `step` is owned by that worker too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asr.normalize import compact_text
from asr.types import Transcriber, Utterance, Word

__all__ = [
    "SAMPLE_RATE",
    "LiveTranscript",
    "StepResult",
    "StreamingOptions",
    "agreed_prefix_chars",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class StreamingOptions:
    max_window_s: float = 15.0  # the longest audio one pass decodes
    min_step_s: float = 1.0  # new audio needed before the next pass over a broadcast
    pause_s: float = 0.6  # silence after a word that ends an utterance
    max_utterance_s: float = 12.0  # an utterance is cut after this long even without a pause
    prompt_chars: int = 100  # committed text before the window passed as the prompt
    keep_s: float = 1.0  # audio kept at the end of a silent buffer (a word may be starting)
    max_fill_s: float = 30.0  # a hole in the audio up to this long is filled with silence


@dataclass(frozen=True, slots=True)
class _HWord:
    """A hypothesis word with the recognizer segment it came from."""

    word: Word
    segment: int  # index of its segment within the pass
    first: bool  # first word of its segment
    avg_logprob: float
    no_speech_prob: float

    @property
    def key(self) -> str:
        return compact_text(self.word.text)


@dataclass(frozen=True, slots=True)
class StepResult:
    utterances: tuple[Utterance, ...]
    window_start_s: float
    window_end_s: float
    done_s: float  # audio before this is fully handled (watermark)
    committed_words: int
    pending_words: int  # hypothesis words waiting for agreement
    decode_s: float = 0.0


def agreed_prefix_chars(previous: Sequence[str], current: Sequence[str]) -> int:
    """Length of the common character prefix of two hypotheses (word texts, compacted). Pure."""
    a, b = "".join(previous), "".join(current)
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(slots=True)
class _Open:
    words: list[_HWord] = field(default_factory=list)

    @property
    def start_s(self) -> float:
        return self.words[0].word.start_s

    @property
    def end_s(self) -> float:
        return self.words[-1].word.end_s


class LiveTranscript:
    """Sliding-window transcript of one broadcast. See the module docstring for the threading contract."""

    def __init__(
        self,
        key: str,
        opts: StreamingOptions | None = None,
        *,
        start_s: float = 0.0,
        first_index: int = 0,
        prompt: str = "",
    ) -> None:
        self.key = key
        self.opts = opts or StreamingOptions()
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._samples = 0  # in _chunks
        self._buf_start_s = start_s
        self._final = False
        # ASR worker state
        self._prev: list[_HWord] = []
        self._open = _Open()
        self._closed_end_s = start_s
        self._committed_end_s = start_s
        self._prompt = _tail(prompt, self.opts.prompt_chars)
        self.next_index = first_index
        self.done_s = start_s
        self.processed_end_s = start_s  # end of the window of the last pass
        self.passes = 0
        self._final_done = False
        self._blank_pass = False  # the last pass at the live edge heard nothing of the pending words

    # -- audio side (any thread) ---------------------------------------------------------------------

    def add_audio(self, start_s: float, samples: np.ndarray) -> None:
        """Append mono float32 16 kHz samples that start at `start_s` on the broadcast's clock.

        A hole before `start_s` (up to `max_fill_s`) is filled with silence; samples that overlap
        audio already buffered are dropped; a longer hole is logged and closed up (times after it
        then run early by the hole's length, which is why the recorder starts a new broadcast instead).
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if self._final:
                raise RuntimeError(f"{self.key}: audio added after finish()")
            end_s = self._buf_start_s + self._samples / SAMPLE_RATE
            gap = start_s - end_s
            if gap > 0.02:
                if gap <= self.opts.max_fill_s:
                    fill = np.zeros(round(gap * SAMPLE_RATE), dtype=np.float32)
                    self._chunks.append(fill)
                    self._samples += fill.shape[0]
                else:
                    logger.warning("%s: %.1f s hole in the audio at %.1f s closed up", self.key, gap, end_s)
            elif gap < -0.02:
                drop = min(samples.shape[0], round(-gap * SAMPLE_RATE))
                samples = samples[drop:]
            if samples.shape[0]:
                self._chunks.append(samples)
                self._samples += samples.shape[0]

    def finish(self) -> None:
        """No more audio will come: the next passes commit everything and close the last utterance."""
        with self._lock:
            self._final = True

    @property
    def final(self) -> bool:
        return self._final

    @property
    def audio_end_s(self) -> float:
        with self._lock:
            return self._buf_start_s + self._samples / SAMPLE_RATE

    @property
    def buffered_s(self) -> float:
        with self._lock:
            return self._samples / SAMPLE_RATE

    # -- ASR worker side -----------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """The final pass ran: every sample is handled and nothing more will come out."""
        return self._final_done

    def wants_pass(self) -> bool:
        """True when a pass would see enough new audio, or the final pass is due."""
        with self._lock:
            if self._final:
                return not self._final_done
            end_s = self._buf_start_s + self._samples / SAMPLE_RATE
            return end_s - self.processed_end_s >= self.opts.min_step_s

    def prompt(self) -> str:
        return self._prompt

    def step(self, transcriber: Transcriber) -> StepResult:
        """One pass: decode the window, commit what is final, close utterances, trim the buffer."""
        opts = self.opts
        with self._lock:
            audio = (
                np.concatenate(self._chunks)
                if len(self._chunks) > 1
                else (self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32))
            )
            self._chunks = [audio] if audio.shape[0] else []
            buf_start = self._buf_start_s
            final = self._final
        win = audio[: int(opts.max_window_s * SAMPLE_RATE)]
        window_end = buf_start + win.shape[0] / SAMPLE_RATE
        whole = win.shape[0] == audio.shape[0]
        at_live_edge = whole and not final
        hyp = self._hypothesis(
            transcriber.transcribe(win, offset_s=buf_start, prompt=self._prompt or None)
            if win.shape[0]
            else ()
        )
        self.passes += 1

        if at_live_edge and not hyp and self._prev and not self._blank_pass:
            # The last pass heard words this one does not (all of it dropped as a hallucination, or VAD
            # found nothing at the edge): one blank pass is no evidence that they were not said, so the
            # audio is kept and decoded again with more behind it; a second blank pass in a row is.
            self._blank_pass = True
            self.processed_end_s = window_end
            return StepResult((), buf_start, window_end, self.done_s, 0, len(self._prev))
        self._blank_pass = False

        if at_live_edge:
            n = agreed_prefix_chars([w.key for w in self._prev], [w.key for w in hyp])
            commit, pending = _split_at_chars(hyp, n)
            k = _final_by_pause(hyp, window_end, opts.pause_s)
            if k > len(commit):  # words followed by a pause the window already holds are final too
                commit, pending = list(hyp[:k]), list(hyp[k:])
        elif whole:  # the end of the broadcast: everything is final
            commit, pending = hyp, []
        else:  # backlog: the window cuts the audio, so only its last segment may be incomplete
            last = hyp[-1].segment if hyp else -1
            commit = [w for w in hyp if w.segment != last]
            pending = [w for w in hyp if w.segment == last]
            if not commit and pending and win.shape[0] >= opts.max_window_s * SAMPLE_RATE - 1:
                # one segment fills the window: keep words clear of the cut, so the buffer moves on
                cut = window_end - opts.keep_s
                commit = [w for w in pending if w.word.end_s <= cut]
                pending = pending[len(commit) :]
        self._prev = pending

        out: list[Utterance] = []
        for w in commit:
            if self._open.words and (
                w.first
                or w.word.start_s - self._open.end_s >= opts.pause_s
                or w.word.end_s - self._open.start_s > opts.max_utterance_s
            ):
                out.append(self._close())
            self._open.words.append(w)
            self._committed_end_s = max(self._committed_end_s, w.word.end_s)
        if self._open.words:
            # the speaker paused after the open utterance: silence heard up to the window's end, or
            # the next (not yet agreed) words start a pause later
            next_start = pending[0].word.start_s if pending else window_end
            quiet_after = next_start - self._open.end_s >= opts.pause_s
            window_full = win.shape[0] >= (opts.max_window_s - opts.keep_s) * SAMPLE_RATE
            if quiet_after or (final and whole and not pending) or window_full:
                out.append(self._close())

        if self._open.words:
            trim_to = self._closed_end_s
        elif pending:
            trim_to = max(self._closed_end_s, pending[0].word.start_s - 0.3)
        elif final and whole:
            trim_to = window_end
        else:
            trim_to = max(self._closed_end_s, window_end - opts.keep_s)
        trim_to = min(max(trim_to, buf_start), window_end)
        self._trim(trim_to)
        self.done_s = self._buf_start_s
        self.processed_end_s = window_end
        if final and whole and not pending and not self._open.words:
            self._final_done = True
        return StepResult(tuple(out), buf_start, window_end, self.done_s, len(commit), len(pending))

    # -- internals -----------------------------------------------------------------------------------

    def _hypothesis(self, utterances: Iterable[Utterance]) -> list[_HWord]:
        """Words of a pass after what is already committed (by time, then by a repeated n-gram)."""
        words: list[_HWord] = []
        for seg, u in enumerate(utterances):
            ws = u.words or (Word(u.text, u.start_s, u.end_s),)
            for i, w in enumerate(ws):
                if not compact_text(w.text):
                    continue
                words.append(_HWord(w, seg, i == 0, u.avg_logprob, u.no_speech_prob))
        cut = self._committed_end_s - 0.1
        words = [w for w in words if w.word.start_s > cut or w.word.end_s > self._committed_end_s + 0.3]
        tail = [w.key for w in self._open.words][-5:]
        if words and tail and words[0].word.start_s < self._committed_end_s + 1.0:
            for k in range(min(5, len(tail), len(words)), 0, -1):
                if tail[-k:] == [w.key for w in words[:k]]:
                    words = words[k:]
                    break
        return words

    def _close(self) -> Utterance:
        ws = self._open.words
        self._open = _Open()
        words = tuple(w.word for w in ws)
        text = "".join(w.text for w in words)
        utt = Utterance(
            index=self.next_index,
            start_s=words[0].start_s,
            end_s=words[-1].end_s,
            text=text,
            words=words,
            source="speech",
            raw_text=text,
            avg_logprob=min(w.avg_logprob for w in ws),
            no_speech_prob=max(w.no_speech_prob for w in ws),
            meta={"live": True},
        )
        self.next_index += 1
        self._closed_end_s = max(self._closed_end_s, utt.end_s)
        self._prompt = _tail(self._prompt + text, self.opts.prompt_chars)
        return utt

    def _trim(self, to_s: float) -> None:
        with self._lock:
            n = round((to_s - self._buf_start_s) * SAMPLE_RATE)
            if n <= 0:
                return
            audio = (
                np.concatenate(self._chunks)
                if len(self._chunks) > 1
                else (self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32))
            )
            n = min(n, audio.shape[0])
            rest = audio[n:]
            self._chunks = [rest] if rest.shape[0] else []
            self._samples = rest.shape[0]
            self._buf_start_s += n / SAMPLE_RATE


def _tail(text: str, n: int) -> str:
    return text[-n:] if n > 0 else ""


def _final_by_pause(words: Sequence[_HWord], window_end_s: float, pause_s: float) -> int:
    """How many leading words are followed by at least `pause_s` of heard audio without speech. Pure."""
    k = 0
    for i, w in enumerate(words):
        nxt = words[i + 1].word.start_s if i + 1 < len(words) else window_end_s
        if nxt - w.word.end_s >= pause_s:
            k = i + 1
    return k


def _split_at_chars(words: Sequence[_HWord], n_chars: int) -> tuple[list[_HWord], list[_HWord]]:
    """Words wholly inside the first `n_chars` characters, and the rest."""
    pos = 0
    for i, w in enumerate(words):
        pos += len(w.key)
        if pos > n_chars:
            return list(words[:i]), list(words[i:])
    return list(words), []
