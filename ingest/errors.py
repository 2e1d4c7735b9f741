"""Errors for bad media input: each names the file and says what is wrong with it, in one line."""

from __future__ import annotations


class MediaError(Exception):
    """A media file cannot be used (missing, not media, truncated, no audio...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
