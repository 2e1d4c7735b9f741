"""Types that leave the ingest stage. Frozen and slotted: they cross process boundaries."""

from __future__ import annotations

from dataclasses import dataclass


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
