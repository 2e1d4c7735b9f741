"""The live ASR worker: one thread owns the transcriber and serves every broadcast's sliding window.

Each broadcast being transcribed (live, or catching up after a restart) is an `AsrBroadcast`: its
`LiveTranscript` (asr/streaming.py) fed by an `AudioFollower` (ingest/tail.py) that decodes the
recorded files as they grow. The worker picks the broadcast furthest behind (`next_broadcast`), runs
one pass over its window, and hands what the pass committed to `AsrPort.transcribed` as a
`TranscriptBatch` (the composition root stores it through the database's one writer, which then hands
it to analysis). A batch goes out when the pass committed lines, when the transcript is final, or
when the watermark moved 5 s (so a restart resumes close to where the last run stopped).

Concurrency contract:

- One worker thread calls the transcriber, `LiveTranscript.step` and the port's `transcribed`; the
  transcriber is never called from another thread.
- `open`, `refine_start`, `get`, `active`, `lag_s` and `stop` may be called from any thread (the
  recorders' threads, the monitor's housekeeping, `status`); the broadcasts' table is guarded by one
  lock, never held while the port or the transcriber is called; the only lock taken under it is a
  transcript's own (a leaf), so it cannot deadlock with the monitor's lock (the port's side).
- The input is bounded: each follower thread appends audio to its transcript and rings the doorbell
  (an `Event`, one bit); while a transcript holds more than `max_buffered_s` of audio not yet handled,
  its follower waits (the disk is the buffer), so a worker that falls behind slows the readers
  instead of filling memory.
- `AsrPort.recording` is asked from the worker's and the followers' threads; `transcribed` must not
  block for long (it queues a write).
- On `stop` the followers stop, the worker finishes the pass in hand and exits; what was recorded
  but not yet transcribed is resumed from the stored watermark at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from asr.streaming import SAMPLE_RATE, LiveTranscript, StreamingOptions
from asr.timing import ArrivalLog, stamp_lines
from asr.types import Transcriber, TranscriptBatch
from ingest.tail import AudioFollower

__all__ = ["AsrBroadcast", "AsrPort", "AsrStats", "AsrWorker"]

logger = logging.getLogger(__name__)


class AsrPort(Protocol):
    """What the ASR worker needs of the rest of the monitor (wired by app/monitor.py)."""

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        """(the recorded end in s, whether recording is over) of a broadcast; None when unknown."""
        ...

    def transcribed(self, batch: TranscriptBatch) -> None:
        """A pass's committed lines and watermark, to store (and then analyse)."""
        ...


@dataclass(slots=True)
class AsrBroadcast:
    """A broadcast being transcribed. Its fields are the worker's; others read them for status."""

    broadcast_id: str
    stream_id: str
    folder: Path
    started_ts: float
    transcript: LiveTranscript
    follower: AudioFollower | None = None
    last_served: float = 0.0
    stored_done_s: float = 0.0
    max_lag_s: float = 0.0
    catchup: bool = False
    source_start_s: float | None = None
    arrivals: ArrivalLog = field(default_factory=ArrivalLog)  # when its audio was decoded (asr/timing.py)


@dataclass(slots=True)
class AsrStats:
    passes: int = 0
    busy_s: float = 0.0
    utterances: int = 0
    started: float = field(default_factory=time.monotonic)


class AsrWorker:
    """Serves every broadcast's transcript fairly with one transcriber; see the module docstring."""

    def __init__(
        self,
        opts: StreamingOptions,
        port: AsrPort,
        load: Callable[[], Transcriber],
        *,
        catchup_cap_s: float,
        clock: Callable[[], float] = time.time,
        transcriber: Transcriber | None = None,
        max_buffered_s: float = 600.0,
    ) -> None:
        self.opts = opts
        self.port = port
        self._load = load
        self._transcriber = transcriber
        self.catchup_cap_s = catchup_cap_s
        self.max_buffered_s = max_buffered_s
        self._clock = clock
        self._lock = threading.Lock()
        self._broadcasts: dict[str, AsrBroadcast] = {}
        self._bell = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = AsrStats()

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def transcriber(self) -> Transcriber:
        """The one transcriber, loaded on first use (the monitor loads it before recording anything)."""
        if self._transcriber is None:
            self._transcriber = self._load()
        return self._transcriber

    def start(self, guard: Callable[[Callable[[], None]], Callable[[], None]] | None = None) -> None:
        _ = self.transcriber
        target = guard(self._loop) if guard is not None else self._loop
        self._thread = threading.Thread(target=target, name="asr", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._bell.set()
        with self._lock:
            followers = [a.follower for a in self._broadcasts.values() if a.follower is not None]
        for f in followers:
            f.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the broadcasts (any thread) ----------------------------------------------------------------------

    def open(
        self,
        broadcast_id: str,
        stream_id: str,
        folder: Path,
        started_ts: float,
        *,
        start_s: float = 0.0,
        first_index: int = 0,
        prompt: str = "",
        catchup: bool = False,
        first_seq: int | None = 0,
        source_start_s: float | None = None,
    ) -> AsrBroadcast:
        """Transcribe a broadcast from `start_s`, following its files from `first_seq` (None: no file
        holds audio after `start_s`; the transcript is final at once). `source_start_s` is the source's
        clock at start_s = 0 when the recorder knows it (the analysis places alerts on it)."""
        ctx = AsrBroadcast(
            broadcast_id,
            stream_id,
            Path(folder),
            started_ts,
            LiveTranscript(broadcast_id, self.opts, start_s=start_s, first_index=first_index, prompt=prompt),
            catchup=catchup,
            stored_done_s=start_s,
            source_start_s=source_start_s,
        )
        with self._lock:
            self._broadcasts[broadcast_id] = ctx
        if first_seq is None:
            ctx.transcript.finish()
        else:
            self._follow(ctx, first_seq=first_seq, skip_before_s=start_s)
        return ctx

    def refine_start(self, broadcast_id: str, recorded_ts: float, end_s: float) -> AsrBroadcast | None:
        """A file ending at `end_s` was recorded at `recorded_ts`. A file cannot arrive before it was
        broadcast, so the earliest (arrival - end) is the best estimate of when start_s = 0 was live:
        the broadcast (its clock refined) when this file moved it, else None."""
        with self._lock:
            ctx = self._broadcasts.get(broadcast_id)
            if ctx is None or recorded_ts - end_s >= ctx.started_ts - 0.2:
                return None
            ctx.started_ts = recorded_ts - end_s
            return ctx

    def get(self, broadcast_id: str) -> AsrBroadcast | None:
        with self._lock:
            return self._broadcasts.get(broadcast_id)

    def active(self) -> list[AsrBroadcast]:
        with self._lock:
            return list(self._broadcasts.values())

    def lag_s(self, ctx: AsrBroadcast, now: float | None = None) -> float:
        """How far ASR is behind the live edge (live broadcasts) or the recorded end (catch-up)."""
        now = self._clock() if now is None else now
        rec = self.port.recording(ctx.broadcast_id)
        if rec is not None and not rec[1]:
            return max(0.0, (now - ctx.started_ts) - ctx.transcript.processed_end_s)
        end = rec[0] if rec is not None else ctx.transcript.audio_end_s
        return max(0.0, end - ctx.transcript.processed_end_s)

    # -- audio (follower threads) -------------------------------------------------------------------------

    def _follow(self, ctx: AsrBroadcast, first_seq: int, skip_before_s: float) -> None:
        bid = ctx.broadcast_id

        def recording_done() -> bool:
            rec = self.port.recording(bid)
            return rec is None or rec[1]

        def on_audio(start_s: float, samples: Any) -> None:
            ctx.transcript.add_audio(start_s, samples)
            ctx.arrivals.add(start_s + len(samples) / SAMPLE_RATE, self._clock())
            self._bell.set()
            # the bound: the follower waits while the worker is far behind on this broadcast
            while ctx.transcript.buffered_s > self.max_buffered_s and not self._stop.wait(0.05):
                pass

        def on_end(reason: str) -> None:
            if reason == "end of recording":
                ctx.transcript.finish()
                self._bell.set()
            elif not self._stop.is_set():
                logger.error("audio of broadcast %s ended: %s; ASR of it stops here", bid, reason)
                ctx.transcript.finish()
                self._bell.set()

        ctx.follower = AudioFollower(
            ctx.folder,
            first_seq=first_seq,
            skip_before_s=skip_before_s,
            recording_done=recording_done,
            on_audio=on_audio,
            on_end=on_end,
            name=bid,
        )
        ctx.follower.start()

    # -- the worker thread --------------------------------------------------------------------------------

    def next_broadcast(self) -> AsrBroadcast | None:
        """The broadcast to serve next: the one furthest behind, so no room lags more than the others.

        Plain round-robin is not fair once a pass cannot take a stream's whole backlog (the window is
        capped): a stream that fell behind would need more passes than the others and never get them.
        A broadcast catching up after a restart competes as if it were `catchup_cap_s` behind at most,
        so its backlog cannot starve the live rooms. Ties go to the one served longest ago.
        """
        now = self._clock()
        with self._lock:
            ready = [a for a in self._broadcasts.values() if a.transcript.wants_pass()]
        if not ready:
            return None
        cap = self.catchup_cap_s

        def urgency(a: AsrBroadcast) -> tuple[float, float]:
            lag = self.lag_s(a, now)
            return (min(lag, cap) if a.catchup else lag), -a.last_served

        return max(ready, key=urgency)

    def _loop(self) -> None:
        transcriber = self.transcriber
        while not self._stop.is_set():
            ctx = self.next_broadcast()
            if ctx is None:
                self._bell.wait(0.05)
                self._bell.clear()
                continue
            ctx.max_lag_s = max(ctx.max_lag_s, self.lag_s(ctx))
            ctx.last_served = time.monotonic()
            t0 = time.perf_counter()
            start_ts = self._clock()
            try:
                res = ctx.transcript.step(transcriber)
            except Exception:
                logger.exception("ASR pass over %s failed; it is retried", ctx.broadcast_id)
                self._stop.wait(1.0)
                continue
            took = time.perf_counter() - t0
            self.stats.passes += 1
            self.stats.busy_s += took
            final = ctx.transcript.exhausted
            now = self._clock()
            logger.debug(
                "ASR %s: window %.1f-%.1f s took %.2f s, live edge %.1f s, %d committed, %d pending",
                ctx.broadcast_id,
                res.window_start_s,
                res.window_end_s,
                took,
                now - ctx.started_ts,
                res.committed_words,
                res.pending_words,
            )
            if res.utterances:  # when each line was heard, decoded and final (asr/timing.py), kept with it
                lines = stamp_lines(
                    res.utterances,
                    ctx.arrivals,
                    decode_start_ts=start_ts,
                    decode_end_ts=now,
                    committed_ts=now,
                )
                res = replace(res, utterances=lines)
            if res.utterances or final or res.done_s - ctx.stored_done_s >= 5.0:
                ctx.stored_done_s = res.done_s
                self.stats.utterances += len(res.utterances)
                self.port.transcribed(
                    TranscriptBatch(ctx.broadcast_id, ctx.stream_id, res.utterances, res.done_s, final)
                )
            if final:
                with self._lock:
                    self._broadcasts.pop(ctx.broadcast_id, None)
                logger.info("broadcast %s fully transcribed", ctx.broadcast_id)
