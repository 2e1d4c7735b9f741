"""Telling a full disk from other failures, wherever the error comes from (low in the layering, so
every stage that writes files can tell)."""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["no_space"]


def no_space(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is a full disk or quota: ENOSPC/EDQUOT from Python,
    SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full (SQLSTATE 53100), or the
    operating system's message for them (ffmpeg, a server's error text)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(exc, "sqlstate", None) == "53100" or getattr(exc, "pgcode", None) == "53100":
            return True
        text = str(exc)
        if any(m in text for m in _NO_SPACE_TEXT):
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError: the driver's own error
        exc = (
            orig if isinstance(orig, BaseException) and orig is not exc else exc.__cause__ or exc.__context__
        )
        seen += 1
    return False


_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "database or disk is full")
