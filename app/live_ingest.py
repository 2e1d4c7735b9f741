"""The recorders' port: what a recorder reports (a broadcast started, a file recorded, the broadcast
ended, the connection's state) goes to the database writer as rows, to the ASR worker as broadcasts to
follow, and to the video worker as files to read; the recorded length per broadcast is kept here for
the ASR worker (`recording`).

Concurrency: called from every recorder's thread; the per-stream table and the recorded lengths are
guarded by the monitor's lock; database writes are queued to the one writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.types import BroadcastEnded, BroadcastStarted, IngestState, SegmentRecorded
from store.live import LiveStore

if TYPE_CHECKING:
    from app.monitor import Monitor

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Rec:
    """What is on disk for a broadcast: the recorded length, and whether recording is over."""

    end_s: float = 0.0
    done: bool = False


class IngestSink:
    """The recorders' port of one monitor (see the module docstring)."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self.lock = mon.lock
        self._rec: dict[str, _Rec] = {}

    def broadcast_started(self, event: BroadcastStarted) -> None:
        st = self.mon.streams[event.stream_id]
        rules_version = st.holder.maybe_reload().version
        self.mon.writer.submit(
            partial(
                LiveStore.start_broadcast,
                broadcast_id=event.broadcast_id,
                stream_id=event.stream_id,
                url=event.source,
                name=st.entry.name or st.entry.id,
                folder=event.dir,
                started_ts=event.started_ts,
                source_start_s=event.source_start_s,
                rules_version=rules_version,
                video=self.mon.video is not None and st.entry.keeps_video(self.mon.cfg.video.enabled),
                media_gap_s=event.media_gap_s,
                hls_join=event.hls_join.as_dict() if event.hls_join is not None else None,
                owner=self.mon.instance_id,
            )
        )
        with self.lock:
            st.broadcast_id = event.broadcast_id
            st.broadcast_started_ts = event.started_ts
            self._rec[event.broadcast_id] = _Rec()
        # source_start_s: the source's clock at start_s = 0, which places this connection's alerts beside
        # the previous connection's (LiveStore.repeats)
        self.mon.asr.open(
            event.broadcast_id,
            event.stream_id,
            Path(event.dir),
            event.started_ts,
            source_start_s=event.source_start_s,
        )
        logger.info("stream %s: broadcast %s started", event.stream_id, event.broadcast_id)

    def segment_recorded(self, event: SegmentRecorded) -> None:
        seg = event.segment
        self.mon.writer.submit(
            partial(
                LiveStore.add_segment,
                broadcast_id=seg.broadcast_id,
                seq=seg.seq,
                path=seg.path,
                start_s=seg.start_s,
                duration_s=seg.duration_s,
                size=event.size,
                created_ts=event.recorded_ts,
                hls_seq=event.hls_seq,
            )
        )
        self.recorded_until(seg.broadcast_id, seg.end_s)
        ctx = self.mon.asr.refine_start(seg.broadcast_id, event.recorded_ts, seg.end_s)  # the live clock
        if ctx is not None:
            with self.lock:
                self.mon.streams[ctx.stream_id].broadcast_started_ts = ctx.started_ts
            self.mon.writer.submit(
                partial(LiveStore.refine_start, broadcast_id=seg.broadcast_id, started_ts=ctx.started_ts)
            )
        stream = self._video_stream(seg.broadcast_id)
        if stream is not None and self.mon.video is not None:
            self.mon.video.submit(seg.broadcast_id, stream, seg)

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        self.mon.writer.submit(
            partial(
                LiveStore.end_broadcast,
                broadcast_id=event.broadcast_id,
                ended_ts=event.ended_ts,
                end_s=event.end_s,
                reason=event.reason,
            )
        )
        stream = self._video_stream(event.broadcast_id)
        if stream is not None and self.mon.video is not None:
            self.mon.video.end(event.broadcast_id, stream)
        self.recorded_until(event.broadcast_id, event.end_s, done=True)
        with self.lock:
            st = self.mon.streams[event.stream_id]
            if st.broadcast_id == event.broadcast_id:
                st.broadcast_id = None
        logger.info(
            "stream %s: broadcast %s ended after %.1f s (%s)",
            event.stream_id,
            event.broadcast_id,
            event.end_s,
            event.reason,
        )

    def recorded_until(self, broadcast_id: str, end_s: float, *, done: bool = False) -> None:
        """What is on disk for a broadcast grew to `end_s` (and recording is over when `done`)."""
        with self.lock:
            rec = self._rec.setdefault(broadcast_id, _Rec())
            rec.end_s = max(rec.end_s, end_s)
            rec.done = rec.done or done

    def _video_stream(self, broadcast_id: str) -> str | None:
        """The stream of a live broadcast whose recording keeps video for the video worker, else None."""
        if self.mon.video is None:
            return None
        ctx = self.mon.asr.get(broadcast_id)
        st = self.mon.streams.get(ctx.stream_id) if ctx is not None else None
        if st is None or not st.entry.keeps_video(self.mon.cfg.video.enabled):
            return None
        return st.entry.id

    def state_changed(self, event: IngestState) -> None:
        with self.lock:
            self.mon.streams[event.stream_id].state = event

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        """(recorded end, recording over) of a broadcast (the ASR worker's port asks)."""
        with self.lock:
            rec = self._rec.get(broadcast_id)
            return None if rec is None else (rec.end_s, rec.done)
