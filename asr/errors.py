"""ASR errors. Each message is one line that names the file or directory at fault and what is wrong."""

from __future__ import annotations

__all__ = ["AsrError", "MediaError", "ModelError"]


class AsrError(Exception):
    """Base class for errors raised by the `asr` package."""


class ModelError(AsrError):
    """The Whisper model cannot be found, assembled or loaded."""


class MediaError(AsrError):
    """A media file cannot be decoded to audio (missing, not media, no audio stream, truncated...).

    Same constructor as `ingest.errors.MediaError` (path, reason) so callers can report both alike.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
