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
    # The container's own start time (MP4/MOV/MKV `creation_time`), epoch seconds, when it carries a
    # plausible one: a recorder stamps it at the start of recording. A scan without --started-at uses it.
    creation_ts: float | None = None


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
class RecorderResume:
    """Where a previous run of the monitor stopped recording a stream (from the database), so a restart
    rejoins an HLS playlist after the last segment recorded and measures the gap on the media clock."""

    hls_last_seq: int | None  # HLS media sequence number of the last segment recorded
    source_end_s: float | None  # the source's clock at the end of the last recording
    end_ts: float | None  # wall clock of the last recorded data


@dataclass(frozen=True, slots=True)
class HlsJoin:
    """Where a connection joined a live HLS playlist, by media sequence number."""

    first: int  # oldest segment the playlist offered
    last: int  # newest segment the playlist offered
    start: int  # the segment recording started at
    resume_after: int | None  # the last segment the previous connection recorded, if resuming

    def as_dict(self) -> dict[str, int | None]:
        return {"first": self.first, "last": self.last, "start": self.start, "resume_after": self.resume_after}


@dataclass(frozen=True, slots=True)
class BroadcastStarted:
    """Data started flowing from a stream: a new broadcast record begins (at start_s = 0)."""

    stream_id: str
    broadcast_id: str
    dir: str  # folder of the broadcast's recorded files
    source: str  # the stream URL (or file) as configured
    started_ts: float  # wall clock of start_s = 0, as first seen (refined later from segment arrivals)
    source_start_s: float | None = None  # the source's own clock at start_s = 0, when ffmpeg reported it
    # Media not recorded between the previous connection's last recorded moment and this one's first,
    # on the source's clock (0 when the rejoin lost nothing); None when either clock is unknown or the
    # source's clock was reset (a new session), so only wall-clock times can place the gap.
    media_gap_s: float | None = None
    hls_join: HlsJoin | None = None  # where an HLS connection joined the playlist (streamlink only)


@dataclass(frozen=True, slots=True)
class SegmentRecorded:
    """A recorded file is complete (ffmpeg listed it in the segment list)."""

    segment: MediaSegment
    size: int
    recorded_ts: float  # wall clock when the file was seen complete
    hls_seq: int | None = None  # the last HLS media sequence number written to the recording so far


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


@dataclass(frozen=True, slots=True)
class StreamIngest:
    """A stream's recorder as the ingest worker last saw it (for the monitor's status)."""

    stream_id: str
    state: IngestState | None  # None until the recorder reported its first state
    broadcast_id: str | None  # the broadcast being recorded, if any
    reconnects: int  # connections after the first one that delivered data
