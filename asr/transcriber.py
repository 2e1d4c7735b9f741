"""Speech → `Utterance`s with faster-whisper.

`WhisperTranscriber` is the one owner of a loaded Whisper model. It is not thread-safe: one ASR worker
calls `transcribe` and drains the returned iterator before the next call (CTranslate2 itself may use
several threads inside one call). The iterator is lazy, like faster-whisper's: decoding happens as it
is consumed, so a caller that stops early saves the work.

Times: faster-whisper reports seconds from the start of the array it was given. `transcribe` adds the
caller's `offset_s` (where that array starts in the broadcast) to every utterance and word time; this is
the one place ASR-relative times become broadcast times.
"""

from __future__ import annotations

import bisect
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz

from asr.config import AsrConfig
from asr.errors import ModelError
from asr.model import resolve_model
from asr.normalize import WordLike, compact_text, normalize_text, normalize_words
from asr.types import Transcriber, Utterance

__all__ = [
    "SAMPLE_RATE",
    "SegmentLike",
    "Transcriber",
    "TranscriberStats",
    "WhisperLike",
    "WhisperTranscriber",
    "is_hallucination",
    "resolve_compute",
    "text_hallucination",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Silence put between speech runs in "merge" mode: without it Whisper runs lines together and times the
# first word of a line inside the previous one; with it each line reads as its own sentence.
_MERGE_GAP_S = 0.6
# Length of a repeated character run that marks a decoding loop (see _loop_cut).
_LOOP_NGRAM = 10
# Longest utterance made by joining Whisper's segments of one line (one decoder window).
_MAX_LINE_S = 30.0


class SegmentLike(Protocol):
    """What the hallucination filter reads from a recognizer result (faster-whisper's `Segment`)."""

    @property
    def text(self) -> str: ...
    @property
    def avg_logprob(self) -> float: ...
    @property
    def no_speech_prob(self) -> float: ...
    @property
    def compression_ratio(self) -> float: ...


@dataclass(slots=True)
class TranscriberStats:
    """Counts since the transcriber was created. Written by the owning thread only.

    `segments` are Whisper's results, `kept` the utterances yielded; `dropped` counts discarded results
    by the first word of the reason: empty, no_speech, compression_ratio, prompt (echo), known (phrase),
    credit (pattern), repetition, loop.
    """

    calls: int = 0
    audio_s: float = 0.0
    segments: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


# -- hallucination filter -------------------------------------------------------------------------------


@cache
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


@cache
def _compact_phrases(phrases: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in (compact_text(p) for p in phrases) if c)


def _repetition_unit(text: str, max_unit: int, min_repeats: int) -> str | None:
    for size in range(1, max_unit + 1):
        if len(text) < size * min_repeats:
            break
        unit = text[:size]
        if (unit * (len(text) // size + 1))[: len(text)] == text:
            return unit
    return None


def is_hallucination(segment: SegmentLike, cfg: AsrConfig) -> str | None:
    """Why `segment` should be dropped as a hallucination, or None to keep it. Pure function.

    Drops: empty text; likely silence (no-speech probability above threshold AND low confidence);
    repetition loops (high compression ratio); and what `text_hallucination` finds in the text alone.
    """
    text = compact_text(segment.text)
    if not text:
        return "empty"
    if segment.no_speech_prob > cfg.no_speech_threshold and segment.avg_logprob < cfg.log_prob_threshold:
        return f"no_speech (p={segment.no_speech_prob:.2f}, avg_logprob={segment.avg_logprob:.2f})"
    if segment.compression_ratio > cfg.compression_ratio_threshold:
        return f"compression_ratio {segment.compression_ratio:.2f}"
    return text_hallucination(segment.text, cfg)


def text_hallucination(raw: str, cfg: AsrConfig) -> str | None:
    """The checks any recognizer's output allows (no scores needed): empty text; the initial prompt
    read back; known phrases such as subtitle credits, matched fuzzily against the whole line; credit
    patterns; and lines made of one short unit repeated ('啊啊啊啊'). Pure function."""
    text = compact_text(raw)
    if not text:
        return "empty"
    prompt = compact_text(cfg.initial_prompt or "")
    if prompt and (
        (len(text) >= 3 and text in prompt) or fuzz.ratio(text, prompt) >= cfg.hallucination_similarity
    ):
        # Over silence Whisper reads its prompt back ("以下是普通话。").
        return "prompt echo"
    for phrase in _compact_phrases(cfg.hallucination_phrases):
        # Whole-line similarity, or the phrase inside a line it mostly fills; a real sentence that
        # merely contains "谢谢观看" somewhere stays.
        if fuzz.ratio(text, phrase) >= cfg.hallucination_similarity or (
            len(phrase) >= 0.6 * len(text)
            and fuzz.partial_ratio(phrase, text) >= cfg.hallucination_similarity
        ):
            return f"known phrase {phrase!r}"
    for pattern in _compiled(cfg.hallucination_patterns):
        match = pattern.search(text)
        if match and (match.end() - match.start()) >= 0.5 * len(text):
            return f"credit pattern {pattern.pattern!r}"
    unit = _repetition_unit(text, cfg.repetition_max_unit, cfg.repetition_min_repeats)
    if unit is not None:
        return f"repetition of {unit!r}"
    return None


# -- model ------------------------------------------------------------------------------------------------


def resolve_compute(cfg: AsrConfig) -> tuple[str, str]:
    """(device, compute_type) for `cfg`, resolving 'auto' with CTranslate2's view of the machine."""
    device = cfg.device
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute_type = cfg.compute_type
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class WhisperLike(Protocol):
    """The part of `faster_whisper.WhisperModel` the transcriber uses."""

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterable[Any], Any]: ...


class _SegmentWithWords(SegmentLike, Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def words(self) -> Iterable[WordLike] | None: ...
    @property
    def temperature(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class _TimedWord:
    """A recognizer word moved to the time of the audio the caller gave (WordLike)."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class _Part:
    """Part of a segment that lies in one speech run (SegmentLike, for the filter)."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


class _SpeechMap:
    """Maps decoder time to the caller's audio time and tells which speech run a moment belongs to.

    `runs` are (start_s, end_s) in the caller's audio. With `gap_s` set, the decoder saw the runs
    joined with `gap_s` of silence between them instead of the original pauses; otherwise it saw the
    audio itself. The silence before a run belongs to that run: Whisper tends to time the first word
    after a pause early, never the last word before it late.
    """

    def __init__(self, runs: list[tuple[float, float]], *, gap_s: float | None = None) -> None:
        self.runs = runs
        self.gap_s = gap_s
        self._starts: list[float] = []
        pos = 0.0
        for start, end in runs:
            self._starts.append(pos if gap_s is not None else start)
            pos += end - start + (gap_s or 0.0)

    def run_of(self, t: float) -> int:
        return max(0, bisect.bisect_right(self._starts, t + (self.gap_s or 0.0)) - 1)

    def to_audio(self, t: float, run: int) -> float:
        if self.gap_s is None:
            return t
        start, end = self.runs[run]
        return min(max(start + (t - self._starts[run]), start), end)


def _split_words(
    words: list[WordLike], speech: _SpeechMap, pause_s: float | None
) -> list[tuple[int, list[_TimedWord]]]:
    """Group a segment's words into (speech run, words) pieces; times in the caller's audio.

    A new piece starts where the speech run changes (a VAD pause) or, within a run, where the gap
    between two words is at least `pause_s` (lines over background music that VAD reads as speech).
    """
    groups: list[tuple[int, list[_TimedWord]]] = []
    for w in words:
        run = speech.run_of(w.start)
        timed = _TimedWord(w.word, speech.to_audio(w.start, run), speech.to_audio(w.end, run), w.probability)
        if (
            not groups
            or run != groups[-1][0]
            or (pause_s is not None and timed.start - groups[-1][1][-1].end >= pause_s)
        ):
            groups.append((run, []))
        groups[-1][1].append(timed)
    return groups


def _loop_cut(words: list[_TimedWord], history: Sequence[str], max_chars_per_s: float) -> int | None:
    """Where a decoding loop starts in `words` (index of the first word to drop), or None.

    Only a line spoken implausibly fast is suspect; in it, the loop starts at the first run of
    `_LOOP_NGRAM` characters already said earlier in this line or in `history` (this call's lines).
    """
    compact = [compact_text(w.word) for w in words]
    text = "".join(compact)
    duration = words[-1].end - words[0].start if words else 0.0
    if len(text) <= max_chars_per_s * max(duration, 1.0):
        return None
    seen = {h[i : i + _LOOP_NGRAM] for h in history for i in range(len(h) - _LOOP_NGRAM + 1)}
    start = None
    for i in range(len(text) - _LOOP_NGRAM + 1):
        gram = text[i : i + _LOOP_NGRAM]
        if gram in seen or gram in text[:i]:
            start = i
            break
    if start is None:
        return None
    pos = 0
    for index, chars in enumerate(compact):
        if pos + len(chars) > start:
            return index
        pos += len(chars)
    return None


@dataclass(frozen=True, slots=True)
class _LineOnce:
    """The first copy of a line Whisper wrote several times over (a `_SegmentWithWords`)."""

    text: str
    start: float
    end: float
    words: list[WordLike]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float | None


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _first_of_repeated_line(segment: _SegmentWithWords, min_chars: int = 6) -> _LineOnce | None:
    """The line once, when `segment` is one line followed by copies of itself; else None. Pure.

    With greedy decoding and no temperature fallback (live passes), Whisper sometimes reads a whole line
    and then loops on it ("这个减肥茶三天瘦十斤。这个减肥茶三天瘦十斤。…") until the token limit. The
    compression-ratio filter would drop the segment, line and all; the line itself was heard. Only a
    period of at least `min_chars` characters counts ("这边这边这边" stays a loop to drop), and the
    result is checked again by the caller's filter.
    """
    words = list(segment.words or ())
    keys = [compact_text(w.word) for w in words]
    text = "".join(keys)
    period = None
    for n in range(1, len(text) // 2 + 1):
        if text[n : 2 * n] != text[:n]:
            continue
        if n >= min_chars:
            period = n
            break
        if (text[:n] * (len(text) // n + 1))[: len(text)] == text:
            return None  # a short unit over and over: nothing was heard
    if period is None:
        return None
    kept: list[WordLike] = []
    pos = 0
    for w, k in zip(words, keys, strict=True):
        if pos + len(k) > period:
            break
        kept.append(w)
        pos += len(k)
    if pos != period:  # the copies are not cut at a word boundary: not a clean repeat
        return None
    line = "".join(w.word for w in kept).strip()
    return _LineOnce(
        text=line,
        start=kept[0].start,
        end=kept[-1].end,
        words=kept,
        avg_logprob=float(segment.avg_logprob),
        no_speech_prob=float(segment.no_speech_prob),
        compression_ratio=_compression_ratio(line),
        temperature=segment.temperature,
    )


@dataclass(frozen=True, slots=True)
class _Piece:
    """Words of one decoder segment that lie in one speech run, after filtering."""

    segment: _SegmentWithWords
    run: int
    words: list[_TimedWord]


def _utterance(pieces: list[_Piece], index: int, offset_s: float, speech: _SpeechMap) -> Utterance:
    words = [w for p in pieces for w in p.words]
    norm = normalize_words(words, offset_s=offset_s)
    segment = pieces[0].segment
    if norm:
        text = "".join(w.text for w in norm)
        start_s, end_s = norm[0].start_s, norm[-1].end_s
        raw_text = "".join(w.word for w in words).strip()
    else:  # no word timestamps: the segment as a whole
        text = normalize_text(segment.text)
        start_run, end_run = (
            speech.run_of(segment.start),
            speech.run_of(max(segment.start, segment.end - 1e-3)),
        )
        start_s = round(offset_s + speech.to_audio(segment.start, start_run), 3)
        end_s = round(offset_s + speech.to_audio(segment.end, end_run), 3)
        raw_text = segment.text.strip()
    weights = [max(len(p.words), 1) for p in pieces]
    total = sum(weights)
    temperatures = [p.segment.temperature for p in pieces if p.segment.temperature is not None]
    return Utterance(
        index=index,
        start_s=start_s,
        end_s=end_s,
        text=text,
        words=norm,
        source="speech",
        raw_text=raw_text,
        avg_logprob=sum(float(p.segment.avg_logprob) * n for p, n in zip(pieces, weights, strict=True))
        / total,
        no_speech_prob=max(float(p.segment.no_speech_prob) for p in pieces),
        compression_ratio=sum(
            float(p.segment.compression_ratio) * n for p, n in zip(pieces, weights, strict=True)
        )
        / total,
        meta={"temperature": max(temperatures, default=None), "segments": len(pieces)},
    )


class WhisperTranscriber:
    """faster-whisper behind the `Transcriber` protocol; loads the model once, in the constructor.

    Raises `ModelError` when the model cannot be found or loaded. See the module docstring for the
    threading contract; `stats` counts kept and dropped (hallucinated) segments by reason.
    """

    def __init__(self, cfg: AsrConfig, *, model: WhisperLike | None = None) -> None:
        """Load the model `cfg` names; tests may inject `model` (anything with faster-whisper's
        `transcribe` signature) to skip loading."""
        self.cfg = cfg
        self.device, self.compute_type = resolve_compute(cfg)
        self.stats = TranscriberStats()
        if model is not None:
            self.model_path = type(model).__name__
            self._model = model
            return
        from asr.encoder import load_whisper_model

        self.model_path = resolve_model(cfg)
        try:
            self._model = load_whisper_model(
                self.model_path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=cfg.cpu_threads,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load Whisper model {self.model_path}: {exc}") from exc
        logger.info(
            "Whisper model %s loaded on %s (%s, cpu_threads=%s)",
            self.model_path,
            self.device,
            self.compute_type,
            cfg.cpu_threads or "default",
        )

    def _speech_runs(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Speech runs found by Silero VAD, as (start, end) sample indices."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(**self.cfg.vad.model_dump())
        return [
            (c["start"], c["end"]) for c in get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
        ]

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        """See `Transcriber.transcribe`. Hallucinated segments are dropped, logged at debug and counted.

        VAD runs eagerly (it decides what to decode); decoding is lazy, as the iterator is consumed.
        """
        cfg = self.cfg
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        duration = audio.shape[0] / SAMPLE_RATE
        self.stats.calls += 1
        self.stats.audio_s += duration
        if audio.shape[0] == 0:
            return iter(())

        clip_timestamps: list[float] | str = "0"
        if not cfg.vad_filter:
            speech = _SpeechMap([(0.0, duration)])
            decoded = audio
        else:
            runs = self._speech_runs(audio)
            if not runs:
                logger.debug("no speech in %.1f s of audio at %.1f s", duration, offset_s)
                return iter(())
            run_s = [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in runs]
            if cfg.vad_mode == "clips":
                speech = _SpeechMap(run_s)
                decoded = audio
                clip_timestamps = [t for run in run_s for t in run]
            else:
                speech = _SpeechMap(run_s, gap_s=_MERGE_GAP_S)
                gap = np.zeros(round(_MERGE_GAP_S * SAMPLE_RATE), dtype=np.float32)
                pieces = [piece for s, e in runs for piece in (audio[s:e], gap)]
                decoded = np.concatenate(pieces[:-1])

        initial_prompt = " ".join(p.strip() for p in (cfg.initial_prompt, prompt) if p and p.strip()) or None
        segments, _info = self._model.transcribe(
            decoded,
            language=cfg.language,
            beam_size=cfg.beam_size,
            temperature=list(cfg.temperatures),
            compression_ratio_threshold=cfg.compression_ratio_threshold,
            log_prob_threshold=cfg.log_prob_threshold,
            no_speech_threshold=cfg.no_speech_threshold,
            condition_on_previous_text=cfg.condition_on_previous_text,
            initial_prompt=initial_prompt,
            hotwords=cfg.hotwords,
            word_timestamps=cfg.word_timestamps,
            vad_filter=False,  # done above, so utterances can be cut at the pauses
            clip_timestamps=clip_timestamps,
        )
        return self._utterances(segments, speech, offset_s)

    def _drop(self, reason: str, start_s: float, end_s: float, text: str) -> None:
        self.stats.dropped[reason.split(" ", 1)[0]] += 1
        logger.debug("dropped %.2f-%.2f s %r: %s", start_s, end_s, text, reason)

    def _pieces(
        self, segments: Iterable[_SegmentWithWords], speech: _SpeechMap, offset_s: float
    ) -> Iterator[_Piece]:
        """Decoder segments, filtered, cut at pauses, with decoding loops removed."""
        cfg = self.cfg
        history: list[str] = []  # compact texts of this call's pieces, for the loop check
        for segment in segments:
            self.stats.segments += 1
            reason = is_hallucination(segment, cfg)
            if reason is not None and reason.startswith("compression_ratio"):
                rescued = _first_of_repeated_line(segment)
                if rescued is not None and is_hallucination(rescued, cfg) is None:
                    self._drop(
                        "loop (the line repeated after itself)",
                        offset_s + rescued.end,
                        offset_s + segment.end,
                        segment.text[len(rescued.text) :],
                    )
                    segment, reason = rescued, None
            if reason is not None:
                self._drop(reason, offset_s + segment.start, offset_s + segment.end, segment.text)
                continue
            groups = _split_words(list(segment.words or ()), speech, cfg.split_pause_s)
            if not groups:  # no word timestamps
                yield _Piece(segment, speech.run_of(segment.start), [])
                continue
            for run, words in groups:
                cut = _loop_cut(words, history, cfg.max_chars_per_s)
                if cut is not None:
                    looped = words[cut:]
                    self._drop(
                        "loop (repeats earlier text, spoken too fast)",
                        offset_s + looped[0].start,
                        offset_s + looped[-1].end,
                        "".join(w.word for w in looped),
                    )
                    words = words[:cut]
                    if not words:
                        continue
                if len(groups) > 1 or cut is not None:
                    # A credit line glued to real speech in one segment: check each part on its own.
                    part = _Part(
                        "".join(w.word for w in words),
                        segment.avg_logprob,
                        segment.no_speech_prob,
                        segment.compression_ratio,
                    )
                    reason = is_hallucination(part, cfg)
                    if reason is not None:
                        self._drop(reason, offset_s + words[0].start, offset_s + words[-1].end, part.text)
                        continue
                history.append(compact_text("".join(w.word for w in words)))
                yield _Piece(segment, run, words)

    def _continues(self, pending: list[_Piece], piece: _Piece) -> bool:
        """Whether `piece` goes on the line in `pending`: same speech run, no pause, not too long."""
        last = pending[-1]
        if not (piece.words and last.words) or piece.run != last.run:
            return False
        pause_s = self.cfg.split_pause_s
        if pause_s is not None and piece.words[0].start - last.words[-1].end >= pause_s:
            return False
        return piece.words[-1].end - pending[0].words[0].start <= _MAX_LINE_S

    def _utterances(
        self, segments: Iterable[_SegmentWithWords], speech: _SpeechMap, offset_s: float
    ) -> Iterator[Utterance]:
        """One utterance per spoken line: Whisper's segments split at pauses, and joined where Whisper
        split a line without a pause (at a comma). A line is yielded once the next one starts."""
        index = 0
        pending: list[_Piece] = []
        for piece in self._pieces(segments, speech, offset_s):
            if pending and self._continues(pending, piece):
                pending.append(piece)
                continue
            if pending:
                utterance = _utterance(pending, index, offset_s, speech)
                if utterance.text:
                    self.stats.kept += 1
                    index += 1
                    yield utterance
            pending = [piece]
        if pending:
            utterance = _utterance(pending, index, offset_s, speech)
            if utterance.text:
                self.stats.kept += 1
                yield utterance
