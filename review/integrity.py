"""Evidence file states for the alert page: ok / changed / missing, without waiting for a click.

Opening an alert checks each evidence file cheaply (does it exist, has it the recorded size: a stat per
file) and queues the files not yet hashed for a full SHA-256 check on one background thread. The
result is kept per file, keyed by its size and modification time, so the next look at the page (or
the API) says `ok` or `changed` from the hash, and a file replaced since is checked again. "Verify"
hashes everything at once and records the result the same way. A hash result older than
`max_age_s` is recomputed in the background (a forger who keeps size and mtime is caught then).

States: `missing` (not on disk), `changed` (size or SHA-256 differs from the database's record),
`ok` (SHA-256 matches), `unverified` (present with the recorded size; the hash check is queued).

Concurrency contract: one `EvidenceChecker` per app, shared by request threads; its cache sits behind
a lock; hashing runs on its own single worker thread (at most one file at a time, so a page load
never competes with a Verify for more than one core); `close()` stops the worker (queued checks are
dropped, a running one finishes).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from alerts.evidence import sha256_file

__all__ = ["EvidenceChecker", "FileState", "overall_state"]

logger = logging.getLogger(__name__)

_SEVERITY = {"missing": 3, "changed": 2, "unverified": 1, "ok": 0}


@dataclass(frozen=True, slots=True)
class FileState:
    name: str
    state: str  # ok | changed | missing | unverified
    checked: str  # what the state rests on: "stat" (existence and size) or "sha256"
    checked_ts: float | None = None  # when the SHA-256 was last computed
    actual_sha256: str | None = None
    actual_size: int | None = None


def overall_state(states: Iterable[FileState]) -> str:
    """The worst state of an alert's files (`ok` for none)."""
    worst = "ok"
    for s in states:
        if _SEVERITY[s.state] > _SEVERITY[worst]:
            worst = s.state
    return worst


@dataclass(frozen=True, slots=True)
class _Hashed:
    size: int
    mtime_ns: int
    ino: int
    sha256: str
    ts: float


class EvidenceChecker:
    def __init__(self, *, max_age_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._hashed: dict[Path, _Hashed] = {}
        self._queued: dict[Path, Future[None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-check")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no background check is queued or running (tests, shutdown). True if idle."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._queued.values())
            if not pending:
                return True
            for f in pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    f.result(timeout=left)
                except Exception:  # the worker logs its own failures
                    pass

    def state(self, name: str, path: Path | None, recorded_sha256: str, recorded_size: int) -> FileState:
        """The cheap check (a stat and the cache); queues a background hash where it is due."""
        st = _stat(path)
        if path is None or st is None:
            return FileState(name, "missing", "stat")
        # the manifest's row carries size 0 (its hash is what is recorded): only compare real sizes
        if recorded_size and st.st_size != recorded_size:
            return FileState(name, "changed", "stat", actual_size=st.st_size)
        with self._lock:
            h = self._hashed.get(path)
        fresh = h is not None and (h.size, h.mtime_ns, h.ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
        if h is not None and fresh:
            if self.clock() - h.ts > self.max_age_s:
                self._queue(path)
            state = "ok" if h.sha256 == recorded_sha256 else "changed"
            return FileState(name, state, "sha256", h.ts, h.sha256, st.st_size)
        self._queue(path)
        return FileState(name, "unverified", "stat", actual_size=st.st_size)

    def verify(self, name: str, path: Path | None, recorded_sha256: str) -> FileState:
        """The full check, now: hash the file and record the result."""
        if path is None or _stat(path) is None:
            return FileState(name, "missing", "sha256", self.clock())
        h = self._hash(path)
        if h is None:
            return FileState(name, "missing", "sha256", self.clock())
        return FileState(
            name, "ok" if h.sha256 == recorded_sha256 else "changed", "sha256", h.ts, h.sha256, h.size
        )

    def _queue(self, path: Path) -> None:
        with self._lock:
            if path in self._queued:
                return
            try:
                self._queued[path] = self._pool.submit(self._background, path)
            except RuntimeError:  # closed
                return

    def _background(self, path: Path) -> None:
        try:
            self._hash(path)
        except Exception:
            logger.exception("background hash of %s failed", path)
        finally:
            with self._lock:
                self._queued.pop(path, None)

    def _hash(self, path: Path) -> _Hashed | None:
        before = _stat(path)
        if before is None:
            return None
        try:
            digest = sha256_file(path)
        except FileNotFoundError:
            return None
        after = _stat(path)
        if after is None:
            return None
        h = _Hashed(after.st_size, after.st_mtime_ns, after.st_ino, digest, self.clock())
        if (before.st_size, before.st_mtime_ns, before.st_ino) == (h.size, h.mtime_ns, h.ino):
            with self._lock:
                self._hashed[path] = h
        return h


def _stat(path: Path | None) -> os.stat_result | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
