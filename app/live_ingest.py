"""The ingest worker's port (ingest/worker.py `IngestPort`): what a recorder reports (a broadcast
started, a file recorded, the broadcast ended) goes to the database writer as rows, to the ASR worker as
broadcasts to follow, and to the video worker as files to read; where the last run stopped recording a
stream comes from the database (app/monitor_resume.py).

Concurrency: called from every recorder's thread (each stream's events in order); the per-stream table
is guarded by the monitor's lock; database writes are queued to the one writer, files to the video
worker's bounded queue without waiting (app/live_video.py: a full queue is caught up from the database).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.monitor_resume import recorder_resume
from ingest.types import BroadcastEnded, BroadcastStarted, IngestState, RecorderResume, SegmentRecorded
from store.live import LiveStore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.monitor import Monitor

logger = logging.getLogger(__name__)


def segment_row(event: SegmentRecorded) -> Callable[[Session], Any]:
    """The ledger write for a recorded segment (for the store's writer): the one place a recorder's
    event becomes a file row, for the monitor's sink and the bus ingest worker alike."""
    seg = event.segment
    return partial(
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


def broadcast_end_row(event: BroadcastEnded) -> Callable[[Session], Any]:
    """The ledger write that ends a broadcast (for the store's writer), as `segment_row`."""
    return partial(
        LiveStore.end_broadcast,
        broadcast_id=event.broadcast_id,
        ended_ts=event.ended_ts,
        end_s=event.end_s,
        reason=event.reason,
    )


def log_ended(event: BroadcastEnded) -> None:
    logger.info(
        "stream %s: broadcast %s ended after %.1f s (%s)",
        event.stream_id,
        event.broadcast_id,
        event.end_s,
        event.reason,
    )


class IngestSink:
    """The ingest port of one monitor (see the module docstring)."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self.lock = mon.lock

    def resume_point(self, stream_id: str) -> RecorderResume | None:
        return recorder_resume(self.mon, stream_id)

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
            st.broadcast_started_ts = event.started_ts
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
        self.mon.writer.submit(segment_row(event))
        ctx = self.mon.asr.refine_start(seg.broadcast_id, event.recorded_ts, seg.end_s)  # the live clock
        if ctx is not None:
            with self.lock:
                self.mon.streams[ctx.stream_id].broadcast_started_ts = ctx.started_ts
            self.mon.writer.submit(
                partial(LiveStore.refine_start, broadcast_id=seg.broadcast_id, started_ts=ctx.started_ts)
            )
        stream = self._video_stream(seg.broadcast_id)
        if stream is not None and self.mon.video is not None:
            # after the row was queued: a file the full video queue leaves out is read back from the rows
            self.mon.video.submit(seg.broadcast_id, stream, seg)

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        self.mon.writer.submit(broadcast_end_row(event))
        stream = self._video_stream(event.broadcast_id)
        if stream is not None and self.mon.video is not None:
            self.mon.video.end(event.broadcast_id, stream)
        log_ended(event)

    def state_changed(self, event: IngestState) -> None:
        """Nothing to do: the status reads the ingest worker's table (a bus port would publish it)."""

    def _video_stream(self, broadcast_id: str) -> str | None:
        """The stream of a live broadcast whose recording keeps video for the video worker, else None."""
        if self.mon.video is None:
            return None
        ctx = self.mon.asr.get(broadcast_id)
        st = self.mon.streams.get(ctx.stream_id) if ctx is not None else None
        if st is None or not st.entry.keeps_video(self.mon.cfg.video.enabled):
            return None
        return st.entry.id
