"""Live frame analysis: the scan's on-screen text and visual detectors, one recorded file at a time.

The recorder reports each file once ffmpeg has closed it; `VideoWorker` samples its frames on the
broadcast's clock (`ingest.frames.FrameSampler`, one per broadcast so the grid runs on across files),
feeds them to the broadcast's `ScreenTextReader` (captions, source 'screen') and `VisualDetector`
(source 'visual'), and hands what each file produced to the monitor's analysis worker as a
`VideoBatch`, whose `done_s` (the file's end) the analysis stores as the broadcast's video watermark,
with `resume_s`: where a restarted reader must begin so that captions still on screen (not yet handed
out) are read again from their first appearance; captions handed out twice that way are stored once.
A caption becomes an utterance when it leaves the screen (or when the broadcast ends), exactly as in a
scan, so a caption's alert carries its first and last moment on screen.

Concurrency contract: `submit`/`end` may be called from any thread (the recorder's callbacks, the
monitor's resume) and never block; the one worker thread owns every reader, detector and sampler and
calls `deliver` and `reread`. OCR and NudeNet models are loaded on the first frame that needs them. On
`stop` the worker finishes the file in hand and exits; files not yet read are read again after a
restart, from the watermark.

Bounded queue, nothing lost: the queue holds at most `max_queue` jobs (files and ends). A job that finds
it full is not queued and not dropped: its broadcast is marked behind from that file on (`_Behind`: the
first file left out, and whether its end came too), and every later job of that broadcast is folded
into the mark instead of queued, so a broadcast's files are still read in order. Once the queue is at
most half full and no earlier job of a behind broadcast is still queued, the worker thread reads its
files back from the ledger, `reread(broadcast_id, from_seq)` (the recorded file rows, read through the
database's writer: a file's row is queued before the file is submitted, so every file left out is
there), reads them, and hands out the broadcast's end if it came. Jobs folded in meanwhile move the mark
on; the broadcast leaves the behind set only when the mark was not moved during the catch-up. So the
recorders never wait for the video worker, memory stays bounded (one mark per broadcast), and the
status shows the backlog (`backlog`: queued jobs, broadcasts behind and their first file left out).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asr.types import Utterance
from detectors.screen import ScreenTextReader
from detectors.types import Detection, VideoBatch
from detectors.video_config import VideoConfig
from detectors.visual import VisualDetector
from ingest.errors import MediaError
from ingest.frames import FrameSampler
from ingest.types import MediaSegment

__all__ = ["VideoBatch", "VideoWorker"]

logger = logging.getLogger(__name__)

MAX_REREAD_S = 60.0  # how far before the video watermark a restarted reader may start
MAX_QUEUE = 256  # queued jobs (files and ends): minutes of video for every stream, a few KB of memory

Reread = Callable[[str, int], Sequence[MediaSegment]]  # (broadcast id, from seq) -> its recorded files


@dataclass(slots=True)
class _State:
    stream_id: str
    sampler: FrameSampler
    reader: ScreenTextReader | None
    visual: VisualDetector | None
    done_s: float = 0.0
    frames: int = 0
    announced: set[tuple[str, float]] = field(default_factory=set)  # open captions already handed out


@dataclass(frozen=True, slots=True)
class _Job:
    broadcast_id: str
    stream_id: str
    segment: MediaSegment | None  # None: the broadcast ended
    first_caption_index: int = 0


@dataclass(slots=True)
class _Behind:
    """A broadcast whose jobs found the queue full: read back from `from_seq` on (then its end, if
    `ended`); `moved` counts the jobs folded in, so a catch-up knows whether more came meanwhile."""

    stream_id: str
    from_seq: int | None  # None: only the end was left out
    first_caption_index: int = 0
    ended: bool = False
    moved: int = 0


@dataclass(slots=True)
class VideoStats:
    files: int = 0
    frames: int = 0
    captions: int = 0
    visual: int = 0
    busy_s: float = 0.0
    failed_files: int = 0
    queue_full: int = 0  # jobs that found the queue full (folded into their broadcast's behind mark)
    reread_files: int = 0  # files read back from the ledger after their broadcast fell behind


class VideoWorker:
    """One thread reading every broadcast's recorded video; see the module docstring."""

    def __init__(
        self,
        cfg: VideoConfig,
        deliver: Callable[[VideoBatch], None],
        reread: Reread,
        *,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.cfg = cfg
        self._deliver = deliver
        self._reread = reread
        self.max_queue = max_queue
        self._q: queue.Queue[_Job] = queue.Queue(max_queue)
        self._lock = threading.Lock()  # guards the three tables below; a leaf
        self._queued: dict[str, int] = {}  # broadcast -> its jobs in the queue
        self._behind: dict[str, _Behind] = {}
        self._read_back: dict[str, int] = {}  # broadcast -> the last file seq read back from the ledger
        self._state: dict[str, _State] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = VideoStats()

    # -- any thread -------------------------------------------------------------------------------

    def submit(
        self, broadcast_id: str, stream_id: str, segment: MediaSegment, *, first_caption_index: int = 0
    ) -> None:
        """Read this closed file of the broadcast (files of one broadcast must come in order). Never
        blocks: with the queue full, the file is read back from the ledger later (module docstring)."""
        self._put(_Job(broadcast_id, stream_id, segment, first_caption_index))

    def end(self, broadcast_id: str, stream_id: str) -> None:
        """The broadcast is over: hand out the captions still on screen, then forget it."""
        self._put(_Job(broadcast_id, stream_id, None))

    def backlog(self) -> int:
        """Jobs waiting in the queue (files left out while their broadcast is behind not counted)."""
        return self._q.qsize()

    def queue_status(self) -> dict[str, Any]:
        """The backlog for the monitor's status: queued jobs, the bound, and the broadcasts behind."""
        with self._lock:
            behind = {
                bid: {"from_seq": b.from_seq, "ended": b.ended, "files_left_out": b.moved}
                for bid, b in self._behind.items()
            }
        return {
            "backlog_files": self._q.qsize(),
            "max_queue": self.max_queue,
            "behind": behind,
            "queue_full": self.stats.queue_full,
            "reread_files": self.stats.reread_files,
        }

    def _put(self, job: _Job) -> None:
        bid = job.broadcast_id
        with self._lock:
            if job.segment is None:
                self._read_back.pop(bid, None)
            elif job.segment.seq <= self._read_back.get(bid, -1):
                return  # read back from the ledger already
            b = self._behind.get(bid)
            if b is None:
                try:
                    self._q.put_nowait(job)
                except queue.Full:
                    seq = job.segment.seq if job.segment is not None else None
                    b = self._behind[bid] = _Behind(job.stream_id, seq, job.first_caption_index)
                    logger.warning(
                        "video queue full (%d jobs): broadcast %s is read back from the recorded files "
                        "from %s on once there is room",
                        self.max_queue,
                        bid,
                        f"file {seq}" if seq is not None else "its end",
                    )
                else:
                    self._queued[bid] = self._queued.get(bid, 0) + 1
                    return
            self.stats.queue_full += 1
            b.moved += 1
            if job.segment is None:
                b.ended = True
            elif b.from_seq is None:  # its end was left out, and then a file came: read from that file
                b.from_seq = job.segment.seq

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="video", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._catch_up()
            try:
                job = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                left = self._queued.get(job.broadcast_id, 0) - 1
                if left > 0:
                    self._queued[job.broadcast_id] = left
                else:
                    self._queued.pop(job.broadcast_id, None)
            self._run_job(job)

    def _run_job(self, job: _Job) -> None:
        try:
            batch = self._handle(job)
        except Exception:
            logger.exception("video analysis of %s failed; it goes on with the next file", job.broadcast_id)
            return
        if batch is not None:
            self._deliver(batch)

    def _catch_up(self) -> None:
        """Read back one behind broadcast, once the queue has room and holds none of its earlier jobs."""
        with self._lock:
            if not self._behind or self._q.qsize() > self.max_queue // 2:
                return
            ready = [bid for bid in self._behind if bid not in self._queued]
            if not ready:
                return
            bid = ready[0]
            b = self._behind[bid]
            from_seq, moved, ended = b.from_seq, b.moved, b.ended
        segs: Sequence[MediaSegment] = ()
        if from_seq is not None:
            try:
                segs = self._reread(bid, from_seq)
            except Exception:
                logger.exception("video of %s: reading back its files failed; tried again in 5 s", bid)
                self._stop.wait(5.0)
                return
        for seg in segs:
            if self._stop.is_set():
                return  # the rest is read again after a restart, from the stored watermark
            self.stats.reread_files += 1
            self._run_job(_Job(bid, b.stream_id, seg, b.first_caption_index))
        with self._lock:
            # a file read back before its own submit came (its row is queued first) is not read twice
            if segs:
                self._read_back[bid] = max(self._read_back.get(bid, -1), segs[-1].seq)
            if b.moved != moved:  # more came meanwhile: read on after what was read, next round
                if segs:
                    b.from_seq = segs[-1].seq + 1
                return
            del self._behind[bid]  # caught up: its next jobs are queued again
            if ended:
                self._read_back.pop(bid, None)
        logger.info("video of %s caught up (%d file(s) read back)", bid, len(segs))
        if ended:
            self._run_job(_Job(bid, b.stream_id, None))

    def _handle(self, job: _Job) -> VideoBatch | None:
        st = self._state.get(job.broadcast_id)
        if job.segment is None:
            if st is None:
                return None
            del self._state[job.broadcast_id]
            rest = st.reader.flush() if st.reader is not None else []
            seen = st.visual.flush() if st.visual is not None else []
            self.stats.captions += len(rest)
            self.stats.visual += len(seen)
            logger.info(
                "video of %s read: %d frames sampled, %d captions",
                job.broadcast_id,
                st.frames,
                st.reader.stats.captions if st.reader else 0,
            )
            return VideoBatch(
                job.broadcast_id, st.stream_id, tuple(rest), tuple(seen), st.done_s, True, st.done_s
            )
        if st is None:
            cfg = self.cfg
            st = self._state[job.broadcast_id] = _State(
                job.stream_id,
                FrameSampler(
                    cfg.frames.interval_s, backend=cfg.frames.backend, skip_nonref=cfg.frames.skip_nonref
                ),
                ScreenTextReader(cfg.screen, index_start=job.first_caption_index)
                if cfg.screen.enabled
                else None,
                VisualDetector(cfg.visual) if cfg.visual.enabled else None,
            )
        seg = job.segment
        t0 = time.perf_counter()
        captions: list[Utterance] = []
        visual: list[Detection] = []
        try:
            for frame in st.sampler.sample_segment(seg):
                st.frames += 1
                self.stats.frames += 1
                if st.reader is not None:
                    captions.extend(st.reader.feed(frame))
                if st.visual is not None:
                    visual.extend(st.visual.feed(frame))
        except (MediaError, OSError, ValueError) as e:
            # a file cut short by a crash or a drop: what was read counts, the rest is a gap in the video
            self.stats.failed_files += 1
            logger.warning(
                "video of %s: file %s unreadable after %d frames: %s",
                seg.broadcast_id,
                seg.path,
                st.frames,
                e,
            )
        self.stats.files += 1
        self.stats.busy_s += time.perf_counter() - t0
        self.stats.captions += len(captions)
        self.stats.visual += len(visual)
        st.done_s = max(st.done_s, seg.end_s)
        opening: list[Utterance] = []
        resume = st.done_s
        if st.reader is not None:
            for u in st.reader.open_captions():
                if (u.text, u.start_s) not in st.announced:
                    st.announced.add((u.text, u.start_s))
                    opening.append(u)
            pending = st.reader.pending_since()
            if pending is not None:
                # not further back than MAX_REREAD_S: a caption up for longer (a room watermark, a
                # banner) has been judged already; after a restart it is read again from there
                resume = max(min(st.done_s, pending), st.done_s - MAX_REREAD_S)
            for u in captions:
                st.announced.discard((u.text, u.start_s))
        return VideoBatch(
            job.broadcast_id,
            job.stream_id,
            tuple(captions),
            tuple(visual),
            st.done_s,
            False,
            resume,
            tuple(opening),
        )
