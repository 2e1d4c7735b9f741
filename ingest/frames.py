"""Frame sampling: one frame every `interval_s` seconds from a media file or from live segment files.

Times are on the broadcast's clock, the transcript's clock: a file's own zero is its container start
time (the origin ffmpeg uses when it seeks or cuts a clip), shifted by `offset_s` (0 for a scanned
file, `MediaSegment.start_s` for a live segment). Samples sit on a fixed grid of the broadcast clock
(0, interval, 2*interval, ...): the first frame at or after each grid point is taken, so a
`FrameSampler` fed consecutive live segments samples across their boundaries exactly as it would one
long file.

Two decoders: PyAV (default; exact presentation times, and it can skip decoding frames that no other
frame references, which halves the decoding cost) and OpenCV's `VideoCapture` (the FFmpeg build
bundled with opencv-python). Both decode every kept frame in full; pixel arrays are BGR uint8.

Concurrency: a `FrameSampler` keeps the position of its grid between files and is meant for one
thread (one stream); separate samplers are independent. The iterators open the file lazily and close
it when exhausted or garbage-collected.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from ingest.errors import MediaError
from ingest.types import Frame, MediaSegment

__all__ = ["Backend", "FrameSampler", "sample_frames", "sample_segment"]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "av", "opencv"]

MIN_INTERVAL_S = 0.05
# A frame this close before a grid point counts as on it: presentation times are rounded to the
# container's time base, so a frame meant for 2.0 s may carry 1.99996 s.
_EPS_S = 1e-3


class FrameSampler:
    """Takes one frame per `interval_s` of broadcast time from one file or a run of consecutive files."""

    def __init__(self, interval_s: float, *, backend: Backend = "auto", skip_nonref: bool = True) -> None:
        if not interval_s >= MIN_INTERVAL_S:
            raise ValueError(f"interval_s must be at least {MIN_INTERVAL_S}, not {interval_s}")
        if backend not in ("auto", "av", "opencv"):
            raise ValueError(f"unknown frame backend {backend!r}: use auto, av or opencv")
        self.interval_s = float(interval_s)
        self.backend: Backend = backend
        self.skip_nonref = skip_nonref
        self._next_due: float | None = None
        self._count = 0
        self.frames_decoded = 0  # every frame the decoder produced, kept or not

    @property
    def frames_sampled(self) -> int:
        return self._count

    def reset(self) -> None:
        """Forget the grid position (a new broadcast on the same sampler)."""
        self._next_due = None
        self._count = 0

    def sample_file(self, path: str | Path, *, offset_s: float = 0.0) -> Iterator[Frame]:
        """Frames of `path` that fall on the grid, with `t_s` = `offset_s` + time in the file."""
        p = Path(path)
        if not p.is_file():
            raise MediaError(str(p), "no such file")
        backend = self.backend
        if backend == "auto":
            backend = "av"
        if backend == "av":
            return self._take(_decode_av(p, offset_s, self.skip_nonref, self))
        return self._take(_decode_opencv(p, offset_s, self))

    def sample_segment(self, segment: MediaSegment) -> Iterator[Frame]:
        """Frames of a recorded live segment, placed at the segment's start on the broadcast clock."""
        return self.sample_file(segment.path, offset_s=segment.start_s)

    def _take(self, decoded: Iterator[tuple[float, _Lazy]]) -> Iterator[Frame]:
        for t_s, lazy in decoded:
            if self._next_due is not None and t_s < self._next_due - _EPS_S:
                continue
            image = lazy()
            frame = Frame(t_s=round(t_s, 3), image=image, index=self._count)
            self._count += 1
            # The next grid point strictly after this frame: a gap in the video skips grid points
            # rather than bunching samples after it.
            self._next_due = (math.floor((t_s + _EPS_S) / self.interval_s) + 1) * self.interval_s
            yield frame


class _Lazy:
    """Converts a decoded frame to a BGR array only when it is kept: most decoded frames are not."""

    __slots__ = ("_convert",)

    def __init__(self, convert: object) -> None:
        self._convert = convert

    def __call__(self) -> np.ndarray:
        image = self._convert()  # type: ignore[operator]
        return np.ascontiguousarray(image)


def _decode_av(
    path: Path, offset_s: float, skip_nonref: bool, owner: FrameSampler
) -> Iterator[tuple[float, _Lazy]]:
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise MediaError(str(path), f"cannot open: {e}") from None
    with container:
        if not container.streams.video:
            raise MediaError(str(path), "has no video stream")
        stream = container.streams.video[0]
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        if container.start_time is not None:
            zero = container.start_time / 1_000_000
        elif stream.start_time is not None and stream.time_base is not None:
            zero = float(stream.start_time * stream.time_base)
        else:
            zero = 0.0
        try:
            for vf in container.decode(stream):
                owner.frames_decoded += 1
                if vf.pts is None or vf.time_base is None:
                    continue
                t_s = offset_s + float(vf.pts * vf.time_base) - zero
                yield t_s, _Lazy(lambda vf=vf: vf.to_ndarray(format="bgr24"))
        except av.FFmpegError as e:
            # A live segment still being written, or a damaged file, ends early; its frames so far stand.
            logger.warning("video decoding of %s stopped early: %s", path, e)


def _decode_opencv(path: Path, offset_s: float, owner: FrameSampler) -> Iterator[tuple[float, _Lazy]]:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise MediaError(str(path), "cannot open as video (OpenCV/FFmpeg)")
        while cap.grab():
            owner.frames_decoded += 1
            t_s = offset_s + cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

            def convert(cap: cv2.VideoCapture = cap) -> np.ndarray:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    raise MediaError(str(path), "frame could not be retrieved after decoding")
                return image

            yield t_s, _Lazy(convert)
    finally:
        cap.release()


def sample_frames(
    path: str | Path,
    interval_s: float,
    *,
    offset_s: float = 0.0,
    backend: Backend = "auto",
    skip_nonref: bool = True,
) -> Iterator[Frame]:
    """One frame every `interval_s` seconds of `path`, `t_s` on the broadcast clock (+`offset_s`)."""
    return FrameSampler(interval_s, backend=backend, skip_nonref=skip_nonref).sample_file(
        path, offset_s=offset_s
    )


def sample_segment(segment: MediaSegment, interval_s: float, *, backend: Backend = "auto") -> Iterator[Frame]:
    """Frames of one live segment on its own; use one `FrameSampler` for a run of segments."""
    return FrameSampler(interval_s, backend=backend).sample_segment(segment)
