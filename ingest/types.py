"""Types that leave the ingest stage. Frozen and slotted: they cross process boundaries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds, as probed before any work starts."""

    path: str
    duration_s: float
    has_audio: bool
    has_video: bool
    container: str
    video_width: int = 0
    video_height: int = 0


@dataclass(frozen=True, slots=True)
class MediaSegment:
    """One recorded copy-codec file of a live broadcast, placed on the broadcast's clock."""

    broadcast_id: str
    seq: int
    path: str
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One sampled video frame, placed on the broadcast's clock (the transcript's clock).

    `image` is a BGR uint8 array of shape (height, width, 3), owned by the frame: readers must not
    write into it. Compared by identity (eq=False), since comparing pixel arrays is never what is meant.
    """

    t_s: float
    image: np.ndarray
    index: int = 0  # sample number within its sampler, counted from 0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


# -- live recording events (recorder thread → monitor) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BroadcastStarted:
    """Data started flowing from a stream: a new broadcast record begins (at start_s = 0)."""

    stream_id: str
    broadcast_id: str
    dir: str  # folder of the broadcast's recorded files
    source: str  # the stream URL (or file) as configured
    started_ts: float  # wall clock of start_s = 0, as first seen (refined later from segment arrivals)
    source_start_s: float | None = None  # the source's own clock at start_s = 0, when ffmpeg reported it


@dataclass(frozen=True, slots=True)
class SegmentRecorded:
    """A recorded file is complete (ffmpeg listed it in the segment list)."""

    segment: MediaSegment
    size: int
    recorded_ts: float  # wall clock when the file was seen complete


@dataclass(frozen=True, slots=True)
class BroadcastEnded:
    """The connection of a broadcast ended (drop, stall, source finished, or stop)."""

    stream_id: str
    broadcast_id: str
    ended_ts: float  # wall clock of the last recorded data
    end_s: float  # recorded length on the broadcast's clock
    reason: str


@dataclass(frozen=True, slots=True)
class IngestState:
    """What a stream's recorder is doing: connecting | recording | reconnecting | offline | finished | stopped."""

    stream_id: str
    state: str
    detail: str
    since_ts: float
    attempt: int = 0
    next_try_ts: float | None = None
