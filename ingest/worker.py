"""The ingest stage's worker: it owns one recorder per stream, starts and stops them, keeps what each
stream and broadcast has on disk, and reports the recorders' events to the `IngestPort`.

    Recorder (ingest/recorder.py: thread + ffmpeg/streamlink, one per stream; reconnects itself)
        │ events: broadcast started / file recorded / broadcast ended / state
        ▼
    IngestWorker: per stream its state and current broadcast; per broadcast the recorded end
        │ and whether recording is over (`recording`, which the ASR stage asks)
        ▼
    IngestPort (wired by the composition root: the database's writer, the ASR and video workers
        today; a bus publisher later)

Concurrency contract:

- Each recorder calls the worker (its `RecorderSink`) from its own thread, one event at a time and in
  order (started → files → ended, then the next broadcast). The worker updates its tables under its own
  lock and calls the port on that same recorder thread, never holding the lock: the port's methods are
  called from several recorder threads at once, each stream's in order.
- There is no queue here: the disk is the buffer. A port that blocks (the database writer's bounded
  queue is full) holds back only that stream's recorder thread; ffmpeg goes on writing and listing
  files, which are reported when the thread resumes, so nothing is lost and no event overtakes another.
- Order against the port: a broadcast's entry exists before `port.broadcast_started` (the port opens
  the readers to its right, which ask `recording` at once); a file counts as recorded only after
  `port.segment_recorded` returned (its database row is queued before anyone can store results past
  it), and the broadcast is over only after `port.broadcast_ended` returned.
- `recording`, `recorded_until`, `snapshot` and `stop` may be called from any thread.
- `start` asks the port where the last run stopped recording each stream (`resume_point`: an HLS
  rejoin continues after the last segment recorded), then starts every recorder. `stop` stops them all
  at once (each ends its connection gracefully: ffmpeg lists its last file and the broadcast's end is
  reported) and waits for them. A recorder that fails with an internal error reports the state
  'failed' and its thread ends; drops and offline rooms are retried by the recorder itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingest.config import IngestConfig
from ingest.recorder import Recorder, RecorderSink
from ingest.types import (
    BroadcastEnded,
    BroadcastStarted,
    IngestState,
    RecorderResume,
    SegmentRecorded,
    StreamIngest,
)

__all__ = ["IngestPort", "IngestWorker", "RecorderFactory", "RecorderHandle", "RecorderSpec"]

logger = logging.getLogger(__name__)


class IngestPort(RecorderSink, Protocol):
    """What the ingest worker hands on (wired by the composition root). The events' methods are called
    on the recorders' threads (see the module docstring); they should not block for long."""

    def resume_point(self, stream_id: str) -> RecorderResume | None:
        """Where a previous run stopped recording this stream, or None (asked once, at `start`)."""
        ...


class RecorderHandle(Protocol):
    """A running recorder as the worker sees it (`ingest.recorder.Recorder`, or a fake in tests)."""

    reconnects: int

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class RecorderSpec:
    """One stream to record: its id and source, how to record it, and whether its video is kept."""

    stream_id: str
    url: str
    cfg: IngestConfig
    keep_video: bool


RecorderFactory = Callable[[RecorderSpec, RecorderSink, RecorderResume | None], RecorderHandle]


@dataclass(slots=True)
class _Stream:
    spec: RecorderSpec
    recorder: RecorderHandle | None = None
    state: IngestState | None = None
    broadcast_id: str | None = None


@dataclass(slots=True)
class _Recorded:
    """What is on disk for a broadcast: the recorded length, and whether recording is over."""

    end_s: float = 0.0
    done: bool = False


class IngestWorker:
    """The recorders of one monitor and what they recorded; see the module docstring."""

    def __init__(
        self,
        specs: Sequence[RecorderSpec],
        port: IngestPort,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        recorder: RecorderFactory | None = None,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self.port = port
        self.root = Path(root)
        self._clock = clock
        self._make = recorder or self._recorder
        self._stop_timeout_s = stop_timeout_s
        self._lock = threading.Lock()  # a leaf: nothing is called while it is held
        self._streams = {s.stream_id: _Stream(s) for s in specs}
        self._recorded: dict[str, _Recorded] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one recorder per stream, each resuming where the last run stopped recording it."""
        for st in self._streams.values():
            if st.recorder is not None:
                raise RuntimeError(f"stream {st.spec.stream_id}: already recording")
            st.recorder = self._make(st.spec, self, self.port.resume_point(st.spec.stream_id))
            st.recorder.start()

    def stop(self) -> None:
        """Stop every recorder at once and wait for them (up to the stop timeout)."""
        recorders = [st.recorder for st in self._streams.values() if st.recorder is not None]
        stoppers = [threading.Thread(target=r.stop, name="stop-recorder", daemon=True) for r in recorders]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(self._stop_timeout_s)

    def _recorder(
        self, spec: RecorderSpec, sink: RecorderSink, resume: RecorderResume | None
    ) -> RecorderHandle:
        return Recorder(
            spec.stream_id,
            spec.url,
            spec.cfg,
            self.root,
            sink,
            keep_video=spec.keep_video,
            clock=self._clock,
            resume=resume,
        )

    # -- the recorders' sink (their threads) ----------------------------------------------------------

    def broadcast_started(self, event: BroadcastStarted) -> None:
        with self._lock:
            self._recorded[event.broadcast_id] = _Recorded()
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.broadcast_id = event.broadcast_id
        self.port.broadcast_started(event)

    def segment_recorded(self, event: SegmentRecorded) -> None:
        self.port.segment_recorded(event)
        seg = event.segment
        self.recorded_until(seg.broadcast_id, seg.end_s)

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        self.port.broadcast_ended(event)
        self.recorded_until(event.broadcast_id, event.end_s, done=True)
        with self._lock:
            st = self._streams.get(event.stream_id)
            if st is not None and st.broadcast_id == event.broadcast_id:
                st.broadcast_id = None

    def state_changed(self, event: IngestState) -> None:
        with self._lock:
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.state = event
        self.port.state_changed(event)

    # -- any thread --------------------------------------------------------------------------------------

    def recorded_until(self, broadcast_id: str, end_s: float, *, done: bool = False) -> None:
        """What is on disk for a broadcast grew to `end_s` (and recording is over when `done`); also for a
        broadcast of an earlier run that is resumed."""
        with self._lock:
            rec = self._recorded.setdefault(broadcast_id, _Recorded())
            rec.end_s = max(rec.end_s, end_s)
            rec.done = rec.done or done

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        """(recorded end in s, recording over) of a broadcast; None when this worker never saw it."""
        with self._lock:
            rec = self._recorded.get(broadcast_id)
            return None if rec is None else (rec.end_s, rec.done)

    def snapshot(self) -> dict[str, StreamIngest]:
        """Every stream's recorder as it is now (for the status), in the configured order."""
        with self._lock:
            return {
                sid: StreamIngest(
                    sid,
                    st.state,
                    st.broadcast_id,
                    st.recorder.reconnects if st.recorder is not None else 0,
                )
                for sid, st in self._streams.items()
            }

    @property
    def stream_ids(self) -> list[str]:
        return list(self._streams)
