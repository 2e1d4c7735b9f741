"""The monitor's one database writer: every state change of a live broadcast is one transaction.

"The queue is the doorbell, the database is the ledger": every state change of a live broadcast is one
transaction run by `DbWriter`, in the order it was submitted, so what the database says is always a
consistent point to resume from (segments recorded → transcribed → analyzed, utterances analyzed
together with the alerts they raised). The transaction bodies are `store.live.LiveStore`'s.

Concurrency contract: `DbWriter` owns the only writing session of a running monitor. Any thread may
`submit` (fire and forget, with an optional `then` callback run on the writer thread after the
commit) or `call` (blocks until committed, returns the result, re-raises the error). Readers open
their own sessions. `stop()` runs everything already queued, then ends the thread.

A full disk does not lose writes: the failed job is kept and retried in order with a backoff, the rest
wait behind it in the bounded queue, and the condition is shown (`DbWriter.status`, see its docstring).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ingest.disk import no_space
from store.db import Database

__all__ = ["DbWriter"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    fn: Callable[[Session], Any]
    then: Callable[[Any], None] | None
    future: Future[Any] | None


_STOP = object()


class DbWriter:
    """Runs submitted functions one at a time, each in its own transaction. See the module docstring.

    A write that fails for want of disk space (`no_space`: SQLite's "database or disk is full",
    ENOSPC/EDQUOT, PostgreSQL's disk_full) is not dropped: the job stays at the head of the line and is
    tried again after a backoff (`retry_min_s` doubling to `retry_max_s`, sooner once the database's
    disk has more room), and everything submitted after it waits behind it in order, in the bounded
    queue. A retried job runs from scratch in a new transaction (the failed one was rolled back), so it
    stores its rows once. While it waits, `status()` says what and where (the database, the free
    space), the log says it once per episode, and `on_event("database_disk_full", ...)` is called (the
    monitor's ops webhook). A full queue (`max_queue`) holds the submitter back instead of dropping its
    job, said the same way (`database_writer_queue_full`; the event at most once per `notice_every_s`,
    since a queue that drains and refills as a burst is written is one problem, not many). `call` does not wait on a full disk: it raises
    the error (its caller knows), or TimeoutError without having run when the jobs ahead of it wait.
    Other errors fail the job as before: raised to a `call`er, else logged and counted in `status()`.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_queue: int = 10_000,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
        on_event: Callable[..., None] | None = None,
        clock: Callable[[], float] = time.time,
        notice_every_s: float = 300.0,
    ) -> None:
        self.db = db
        self.notice_every_s = notice_every_s
        self._last_full_notice: float | None = None  # when on_event last said the queue was full
        self.max_queue = max_queue
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.on_event = on_event
        self._clock = clock
        self._q: queue.Queue[Any] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._lock = threading.Lock()
        self._stopping = False
        self._stop_deadline = float("inf")
        self._closed = False
        self.failures = 0  # jobs failed for another reason than disk space (not retried)
        self.abandoned = 0  # jobs given up at stop while the disk was still full
        self.space_episodes = 0
        self._holding = 0  # 1 while a job waits for space at the head of the line
        self._space: dict[str, Any] | None = None  # the current "waiting for disk space" episode
        self._full: dict[str, Any] | None = None  # the current "queue full" episode
        self._last_failure: dict[str, Any] | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[Session], T], then: Callable[[T], None] | None = None) -> None:
        job = _Job(fn, then, None)
        try:
            self._q.put_nowait(job)
            return
        except queue.Full:
            pass
        self._queue_full()
        while not self._closed:  # held back, not dropped: the writer takes it once there is room
            try:
                self._q.put(job, timeout=1.0)
                return
            except queue.Full:
                continue
        logger.error(
            "database write %s not queued: the writer has stopped (the next start resumes from the database)",
            _name(fn),
        )

    def call(self, fn: Callable[[Session], T], timeout: float | None = 60.0) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("DbWriter.call from the writer thread would wait for itself")
        fut: Future[T] = Future()
        try:
            self._q.put(_Job(fn, None, fut), timeout=timeout)
        except queue.Full:
            raise TimeoutError(
                f"database write {_name(fn)} not queued within {timeout} s: the writer queue is full"
            ) from None
        try:
            return fut.result(timeout)
        except FuturesTimeout:
            if not fut.cancel():  # it runs now: its outcome is close
                return fut.result(5.0)
            space = self._space
            why = f": {space['error']}" if space else ""
            raise TimeoutError(
                f"database write {_name(fn)} not run within {timeout} s (writer backlog {self.backlog}){why}"
            ) from None

    def stop(self, timeout: float = 30.0) -> None:
        """Run what is queued, then end. Writes still waiting for disk space when `timeout` has passed are
        given up (logged with their count): the database stays a consistent point the next start resumes
        from (recordings on disk are rescanned, transcription and analysis redone past the stored marks)."""
        if self._thread.is_alive():
            self._stop_deadline = time.monotonic() + timeout
            self._stopping = True
            try:
                self._q.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(max(0.1, self._stop_deadline - time.monotonic() + 1.0))
        self._closed = True

    @property
    def backlog(self) -> int:
        return self._q.qsize() + self._holding

    @property
    def waiting_for_space(self) -> bool:
        return self._space is not None

    def status(self) -> dict[str, Any]:
        """For the monitor's status: backlog, the disk-full and queue-full episodes, failed jobs."""
        with self._lock:
            return {
                "backlog": self.backlog,
                "max_queue": self.max_queue,
                "waiting_for_space": None if self._space is None else {**self._space, "held": self.backlog},
                "queue_full": None if self._full is None else dict(self._full),
                "space_episodes": self.space_episodes,
                "failed": self.failures,
                "last_failure": None if self._last_failure is None else dict(self._last_failure),
                "abandoned": self.abandoned,
            }

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                job = self._q.get(timeout=0.5)
            except queue.Empty:
                if self._stopping and time.monotonic() > self._stop_deadline:
                    return
                continue
            if job is _STOP:
                return
            if job.future is not None and not job.future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting before it ran
            self._run_job(job)
            if self._full is not None and self._q.qsize() < self.max_queue // 2:
                with self._lock:
                    full, self._full = self._full, None
                if full is not None:
                    logger.warning("database writer queue has room again (%d queued)", self._q.qsize())

    def _run_job(self, job: _Job) -> None:
        backoff = self.retry_min_s
        while True:
            try:
                with self.db.session() as s, s.begin():
                    result = job.fn(s)
            except Exception as e:
                if no_space(e):
                    if job.future is not None:
                        self._waiting(job, e, 0.0, held=False)
                        job.future.set_exception(e)
                        return
                    if self._stopping and time.monotonic() >= self._stop_deadline:
                        self._abandon(job, e)
                        return
                    free = self._waiting(job, e, backoff, held=True)
                    self._pause(backoff, free)
                    backoff = min(self.retry_max_s, backoff * 2)
                    continue
                self._failed(job, e)
                return
            break
        self._holding = 0
        if self._space is not None:
            self._recovered()
        if job.future is not None:
            job.future.set_result(result)
        if job.then is not None:
            try:
                job.then(result)
            except Exception:
                logger.exception("callback after a database write failed")

    def _failed(self, job: _Job, e: BaseException) -> None:
        self.failures += 1
        with self._lock:
            self._last_failure = {"ts": self._clock(), "job": _name(job.fn), "error": _short(e)}
        if job.future is not None:
            job.future.set_exception(e)
        else:
            logger.exception("database write failed (%s); it is not retried", _name(job.fn))

    def _where(self) -> tuple[str, Path | None]:
        """(the database as a person would name it, the folder whose free space matters or None)."""
        url = self.db.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database).absolute()
            return str(path), path.parent
        return url.render_as_string(hide_password=True), None

    def _waiting(self, job: _Job, e: BaseException, backoff: float, *, held: bool) -> int | None:
        """Record (and, once per episode, say) that the database's disk is full. Returns its free bytes."""
        where, folder = self._where()
        free: int | None = None
        room = "free space unknown"
        if folder is not None:
            try:
                usage = shutil.disk_usage(folder)
                free, room = usage.free, f"{usage.free} of {usage.total} bytes free"
            except OSError:
                pass
        self._holding = 1 if held else 0
        held_n = self.backlog
        what = (
            f"{held_n} write(s) held in order and retried every {backoff:.0f} s until space is freed; "
            "nothing is dropped"
            if held
            else f"write {_name(job.fn)} refused"
        )
        message = f"no space left on device for the database {where} ({room}): {what} ({_short(e)})"[:1000]
        with self._lock:
            first = self._space is None
            if first:
                self.space_episodes += 1
            self._space = {
                "error": message,
                "where": where,
                "since_ts": self._clock() if first else (self._space or {}).get("since_ts"),
                "retries": 0 if first else int((self._space or {}).get("retries", 0)) + 1,
                "retry_in_s": backoff,
                "job": _name(job.fn),
            }
        if first:
            logger.error("%s", message)
            if self.on_event is not None:
                try:
                    self.on_event("database_disk_full", message=message, where=where)
                except Exception:
                    logger.exception("reporting the full database disk failed")
        else:
            logger.debug("%s", message)
        return free

    def _pause(self, backoff: float, free: int | None) -> None:
        """Wait `backoff` seconds (no longer than a stop allows), less once the database's disk gains room."""
        _, folder = self._where()
        deadline = min(time.monotonic() + backoff, self._stop_deadline)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            if folder is not None and free is not None:
                try:
                    if shutil.disk_usage(folder).free > free + 64 * 1024:
                        return
                except OSError:
                    pass

    def _recovered(self) -> None:
        with self._lock:
            space, self._space = self._space, None
        if space is None:
            return
        took = self._clock() - float(space.get("since_ts") or self._clock())
        logger.warning(
            "database %s writable again after %.1f s waiting for disk space (%d retries); %d write(s) queued",
            space.get("where"),
            took,
            int(space.get("retries", 0)) + 1,
            self._q.qsize(),
        )
        if self.on_event is not None:
            try:
                self.on_event(
                    "database_disk_space_back",
                    message=f"database writable again after {took:.0f} s",
                    where=space.get("where"),
                )
            except Exception:
                logger.exception("reporting the database's recovery failed")

    def _abandon(self, job: _Job, e: BaseException) -> None:
        self.abandoned += 1
        self._holding = 0
        where, _ = self._where()
        logger.error(
            "stopping: database write %s given up, the disk of %s still full (%s); the next start resumes "
            "from what the database holds",
            _name(job.fn),
            where,
            _short(e),
        )

    def _queue_full(self) -> None:
        with self._lock:
            full = self._full
            first = full is None
            if full is None:
                space = self._space
                full = self._full = {
                    "since_ts": self._clock(),
                    "max_queue": self.max_queue,
                    "message": (
                        f"database writer queue full ({self.max_queue} writes waiting"
                        + (f": {space['error']}" if space else "")
                        + "); the monitor's workers wait for room, nothing is dropped"
                    )[:1000],
                }
            message = str(full["message"])
            now = self._clock()
            notify = first and (
                self._last_full_notice is None or now - self._last_full_notice >= self.notice_every_s
            )
            if notify:
                self._last_full_notice = now
        if first:
            logger.error("%s", message)
        if notify:
            if self.on_event is not None:
                try:
                    self.on_event("database_writer_queue_full", message=message, max_queue=self.max_queue)
                except Exception:
                    logger.exception("reporting the full writer queue failed")


def _name(fn: Callable[..., Any]) -> str:
    f = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or f)


def _short(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]
