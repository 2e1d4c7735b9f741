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
