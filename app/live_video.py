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
monitor's resume); the one worker thread owns every reader, detector and sampler and calls `deliver`.
OCR and NudeNet models are loaded on the first frame that needs them. On `stop` the worker finishes
the file in hand and exits; files not yet read are read again after a restart, from the watermark.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
class VideoStats:
    files: int = 0
    frames: int = 0
    captions: int = 0
    visual: int = 0
    busy_s: float = 0.0
    failed_files: int = 0


class VideoWorker:
    """One thread reading every broadcast's recorded video; see the module docstring."""

    def __init__(self, cfg: VideoConfig, deliver: Callable[[VideoBatch], None]) -> None:
        self.cfg = cfg
        self._deliver = deliver
        self._q: queue.Queue[_Job] = queue.Queue()
        self._state: dict[str, _State] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = VideoStats()

    # -- any thread -------------------------------------------------------------------------------

    def submit(
        self, broadcast_id: str, stream_id: str, segment: MediaSegment, *, first_caption_index: int = 0
    ) -> None:
        """Read this closed file of the broadcast (files of one broadcast must come in order)."""
        self._q.put(_Job(broadcast_id, stream_id, segment, first_caption_index))

    def end(self, broadcast_id: str, stream_id: str) -> None:
        """The broadcast is over: hand out the captions still on screen, then forget it."""
        self._q.put(_Job(broadcast_id, stream_id, None))

    def backlog(self) -> int:
        return self._q.qsize()

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
            try:
                job = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                batch = self._handle(job)
            except Exception:
                logger.exception(
                    "video analysis of %s failed; it goes on with the next file", job.broadcast_id
                )
                continue
            if batch is not None:
                self._deliver(batch)

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
