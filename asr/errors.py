"""ASR errors. Each message is one line that names the file or directory at fault and what is wrong."""

from __future__ import annotations

from ingest.errors import MediaError  # one media error for the whole pipeline

__all__ = ["AsrError", "MediaError", "ModelError"]


class AsrError(Exception):
    """Base class for errors raised by the `asr` package."""


class ModelError(AsrError):
    """The Whisper model cannot be found, assembled or loaded."""
