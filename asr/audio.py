"""Decode a media file to what Whisper reads: 16 kHz mono float32 samples in [-1, 1].

Decoding uses PyAV (bundled FFmpeg libraries) through `faster_whisper.decode_audio`; no ffmpeg binary
is needed. Stateless and safe to call from any thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av
import numpy as np

from asr.errors import MediaError

__all__ = ["SAMPLE_RATE", "load_audio"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# A file whose decoded audio falls short of its declared duration by more than this is truncated.
_TRUNCATION_TOLERANCE = 0.05
_TRUNCATION_SLACK_S = 0.5


def _declared_duration_s(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def load_audio(path: str | os.PathLike[str], *, allow_partial: bool = False) -> np.ndarray:
    """Decode the first audio stream of `path` to 16 kHz mono float32.

    Raises `MediaError` (one line naming the file) when the file is missing, a directory, unreadable,
    not media, has no audio stream, or is truncated: nothing decodable, or (unless `allow_partial`)
    clearly less audio than its header declares. A live segment cut mid-write can be read with
    `allow_partial=True` to keep what is there.
    """
    from faster_whisper import decode_audio

    p = Path(path)
    name = str(p)
    if not p.exists():
        raise MediaError(name, "no such file")
    if p.is_dir():
        raise MediaError(name, "is a directory, not a media file")
    if not os.access(p, os.R_OK):
        raise MediaError(name, "cannot read it (permission denied)")
    if p.stat().st_size == 0:
        raise MediaError(name, "empty file (0 bytes)")

    try:
        with av.open(name, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise MediaError(name, f"has no audio stream (streams: {kinds})")
            declared = _declared_duration_s(container, container.streams.audio[0])
    except av.error.FFmpegError as exc:
        raise MediaError(
            name, f"cannot be opened as media: not a media file, or damaged/truncated ({_describe(exc)})"
        ) from exc

    try:
        audio = decode_audio(name, sampling_rate=SAMPLE_RATE)
    except av.error.FFmpegError as exc:
        raise MediaError(
            name, f"audio cannot be decoded, file damaged or truncated ({_describe(exc)})"
        ) from exc
    audio = np.ascontiguousarray(audio, dtype=np.float32)

    decoded = audio.shape[0] / SAMPLE_RATE
    if audio.shape[0] == 0:
        raise MediaError(name, "no audio could be decoded (empty or truncated audio stream)")
    if declared is not None and decoded < declared * (1 - _TRUNCATION_TOLERANCE) - _TRUNCATION_SLACK_S:
        if not allow_partial:
            raise MediaError(
                name, f"truncated: decoded {decoded:.1f} s of audio but the file declares {declared:.1f} s"
            )
        logger.warning("%s: truncated, using the %.1f s decoded of %.1f s declared", name, decoded, declared)
    return audio


def _describe(exc: av.error.FFmpegError) -> str:
    # PyAV's str() repeats the file name; the strerror alone reads better after ours.
    return getattr(exc, "strerror", None) or str(exc)
