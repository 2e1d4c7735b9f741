"""Video on the bus, ingest side: the monitor's video reader on the ingest box, its batches on `LW_VIDEO`.

    IngestRunner (app/bus_ingest.py) ── each closed file of a broadcast that keeps video ──▶ BusVideo.file
        │ VideoWorker (app/live_video.py, the monitor's: frame sampling, RapidOCR captions, NudeNet
        ▼ visual checks; one thread, bounded queue, files read back from the store when it is full)
    VideoMessage (app/bus_wire.py: captions with their first and last moment on screen, captions still on
        │ screen, visual detections, watermarks) ── lw.video.<stream> ──▶ LW_VIDEO (work queue)
        ▼
    analyze workers (app/bus_analyze.py: BusAnalyzer.handle_video → the monitor's analysis and store)

Video never crosses the bus: the frames are read where the files were recorded, and only what they gave
travels (a few hundred bytes a file). Configured as in the monitor: the `video:` section (`enabled`,
`screen`, `visual`, `frames`) and each stream's `record_video`; off when `video.enabled` is false or
both readers are off, and the broadcast is then done when its audio is.

Numbering: the batches of one reader of a broadcast are numbered 0, 1, 2, ... in the order the reader
hands them out (one per file, then the final one), so publishing again after a lost confirmation uses
the same id (`<broadcast>:v<epoch>.<seq>`: stored once by JetStream within its duplicate window; the
analyze workers take a committed batch once by its place). The reader that began the broadcast is epoch
0. A worker that takes a broadcast over (app/bus_ingest.py `take_over`, its files reachable) reads its
video again from the stored video watermark (`video_resume_s`: a caption on screen at the takeover is
read again from its first appearance, as the monitor does after a restart) as a new reader, epoch = the
takeover's wall clock in ms; the analyze workers retire the old reader's batches not committed yet.

Concurrency: `file`/`end`/`resume` are called from the recorders' threads (and the takeover), never
block on the video (VideoWorker queues); the video thread publishes through `publish`, which waits for
the bus (backpressure holds the video thread, not the recorders: the disk is the buffer).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.bus_wire import VideoMessage, encode_video, video_subject
from app.live_video import VideoWorker
from app.monitor_config import MonitorConfig, StreamEntry
from detectors.types import VideoBatch
from ingest.types import MediaSegment
from store.db import Database
from store.live import LiveStore, next_caption_index
from store.models import Broadcast, MediaSegmentRow
from store.paths import resolve_stored
from store.writer import DbWriter

__all__ = ["BusVideo", "publish_video"]

logger = logging.getLogger(__name__)


class BusVideo:
    """The ingest worker's video reader and its batches' numbering; see the module docstring."""

    def __init__(
        self, cfg: MonitorConfig, db: Database, writer: DbWriter, publish: Callable[[VideoMessage], None]
    ) -> None:
        v = cfg.video
        self.analysis_on = bool(v.enabled)
        self.db = db
        self.writer = writer
        self._publish = publish
        self.worker = (
            VideoWorker(v, self._deliver, self._reread)
            if v.enabled and (v.screen.enabled or v.visual.enabled)
            else None
        )
        self._lock = threading.Lock()  # guards the three tables below; a leaf
        self._streams: dict[str, str] = {}  # broadcast -> stream, for the broadcasts read here
        self._readers: dict[str, list[int]] = {}  # broadcast -> [epoch, next seq]
        self._open: set[str] = set()  # broadcasts with files submitted and no final batch published
        self.batches = 0

    def keeps(self, entry: StreamEntry) -> bool:
        """Whether this stream's video is read here (the monitor's rule: video on, `record_video`)."""
        return self.worker is not None and entry.keeps_video(self.analysis_on)

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    # -- the recorders' threads -------------------------------------------------------------------------

    def opened(self, broadcast_id: str, stream_id: str) -> None:
        with self._lock:
            self._streams[broadcast_id] = stream_id
            self._readers.setdefault(broadcast_id, [0, 0])

    def file(self, seg: MediaSegment) -> None:
        """A closed file of a broadcast read here (after its row was queued: a file the full queue leaves
        out is read back from the rows)."""
        with self._lock:
            stream = self._streams.get(seg.broadcast_id)
            if stream is None or self.worker is None:
                return
            self._open.add(seg.broadcast_id)
        self.worker.submit(seg.broadcast_id, stream, seg)

    def end(self, broadcast_id: str) -> None:
        """The broadcast's recording is over: the captions still on screen, then its final batch."""
        with self._lock:
            stream = self._streams.get(broadcast_id)
            read = broadcast_id in self._open
        if stream is None or self.worker is None:
            return
        if read:
            self.worker.end(broadcast_id, stream)
        else:  # no file was read: the analysis still needs to hear the video is complete
            self._deliver(VideoBatch(broadcast_id, stream, (), (), 0.0, True, 0.0))

    def resume(self, broadcast_id: str, stream_id: str) -> int:
        """Read a taken-over broadcast's video again from its stored watermark, as a new reader; the
        number of files queued."""
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None or not b.video_expected or b.video_complete:
                return 0
            from_s = b.video_resume_s if b.video_resume_s is not None else (b.video_done_s or 0.0)
            rows = s.scalars(
                select(MediaSegmentRow)
                .where(
                    MediaSegmentRow.broadcast_id == broadcast_id,
                    MediaSegmentRow.deleted.is_(False),
                    MediaSegmentRow.start_s + MediaSegmentRow.duration_s > from_s,
                )
                .order_by(MediaSegmentRow.seq)
            ).all()
            first_index = next_caption_index(s, broadcast_id)
            segs = [
                MediaSegment(broadcast_id, r.seq, str(resolve_stored(r.path, self.db.data_dir)), r.start_s,
                             r.duration_s)
                for r in rows
            ]  # fmt: skip
        if self.worker is None:  # video analysis is off here now: what was read stands, the rest is unread
            self.writer.call(
                partial(LiveStore.store_captions, broadcast_id=broadcast_id, captions=(), done_s=from_s, final=True)
            )
            return 0
        with self._lock:
            self._streams[broadcast_id] = stream_id
            self._readers[broadcast_id] = [int(time.time() * 1000), 0]
            self._open.add(broadcast_id)
        for seg in segs:
            self.worker.submit(broadcast_id, stream_id, seg, first_caption_index=first_index)
        self.worker.end(broadcast_id, stream_id)
        logger.info(
            "broadcast %s: its video is read again from %.1f s (%d file(s)) by this worker",
            broadcast_id,
            from_s,
            len(segs),
        )
        return len(segs)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every broadcast read here has its final batch published (a clean stop)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._open:
                    return True
            time.sleep(0.1)
        with self._lock:
            left = sorted(self._open)
        logger.warning("video of %s not read to its end before stopping; a takeover reads it again", left)
        return False

    # -- the video thread -------------------------------------------------------------------------------

    def _deliver(self, batch: VideoBatch) -> None:
        bid = batch.broadcast_id
        with self._lock:
            epoch, seq = self._readers.setdefault(bid, [0, 0])
        self._publish(VideoMessage(batch, seq, epoch))
        self.batches += 1
        with self._lock:
            r = self._readers.get(bid)
            if r is not None and r[0] == epoch:
                r[1] = seq + 1
            if batch.final:
                self._readers.pop(bid, None)
                self._streams.pop(bid, None)
                self._open.discard(bid)
        if batch.captions or batch.visual:
            logger.info(
                "broadcast %s: video batch %d.%d published (%d caption(s), %d visual, read to %.1f s)",
                bid,
                epoch,
                seq,
                len(batch.captions),
                len(batch.visual),
                batch.done_s,
            )

    def _reread(self, broadcast_id: str, from_seq: int) -> list[MediaSegment]:
        """A broadcast's recorded files from `from_seq` on (read through the writer: a file's row is queued
        before the file is submitted)."""

        def read(s: Session) -> list[MediaSegment]:
            rows = s.scalars(
                select(MediaSegmentRow)
                .where(
                    MediaSegmentRow.broadcast_id == broadcast_id,
                    MediaSegmentRow.seq >= from_seq,
                    MediaSegmentRow.deleted.is_(False),
                )
                .order_by(MediaSegmentRow.seq)
            ).all()
            return [
                MediaSegment(broadcast_id, r.seq, str(resolve_stored(r.path, self.db.data_dir)), r.start_s,
                             r.duration_s)
                for r in rows
            ]  # fmt: skip

        return self.writer.call(read)


async def publish_video(js: Any, msg: VideoMessage, timeout_s: float) -> None:
    """One video batch on its stream's subject, with its id (a re-publish is stored once); waits for room."""
    from nats.js.errors import APIError

    data = encode_video(msg)
    subject = video_subject(msg.batch.stream_id)
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg.msg_id})
            return
        except APIError as e:  # the stream is full (discard new): wait for the analysis to catch up
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("bus refused video batch %s (%s); retrying in %.1f s", msg.msg_id, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
