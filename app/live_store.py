"""The monitor's database side: one writer thread, and the live repository functions it runs.

"The queue is the doorbell, the database is the ledger": every state change of a live broadcast is one
transaction run by `DbWriter`, in the order it was submitted, so what the database says is always a
consistent point to resume from (segments recorded → transcribed → analyzed, utterances analyzed
together with the alerts they raised).

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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alerts.types import Alert
from asr.types import Utterance
from detectors.types import Detection, PriceClaim
from ingest import ffmpeg
from ingest.disk import no_space
from ingest.recorder import read_segment_list
from store import repo
from store.db import Database
from store.models import (
    AlertRow,
    Broadcast,
    BroadcastGap,
    DetectionRow,
    MediaSegmentRow,
    PriceClaimRow,
    UtteranceRow,
)
from store.paths import session_data_dir, to_stored
from store.prices import claim_from_row

__all__ = ["DbWriter", "LiveStore", "no_space"]

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


class LiveStore:
    """Transaction bodies for live broadcasts: each function takes the writer's session."""

    # -- broadcasts, gaps, segments -------------------------------------------------------------------

    @staticmethod
    def start_broadcast(
        s: Session,
        *,
        broadcast_id: str,
        stream_id: str,
        url: str,
        name: str,
        folder: str,
        started_ts: float,
        source_start_s: float | None,
        rules_version: str,
        video: bool = False,
        media_gap_s: float | None = None,
        hls_join: dict[str, int | None] | None = None,
        owner: str | None = None,
    ) -> None:
        """A new broadcast row; `video`: the video worker reads it too, so it is done only when both are;
        `owner`: the monitor instance recording it (store/leases.py).

        It closes the stream's open gap. With `media_gap_s` (the hole on the source's clock, see
        `ingest.types.BroadcastStarted`) the gap is placed on the media timeline: it starts when the
        previous broadcast's last recorded moment was live (its start + its recorded length) and lasts
        exactly the media not recorded, 0 when the rejoin lost nothing. Without it, the wall-clock
        times of the last data and of the new connection bound it.
        """
        repo.ensure_stream(s, stream_id, url, name)
        s.add(
            Broadcast(
                id=broadcast_id,
                stream_id=stream_id,
                kind="live",
                source=url,
                started_ts=started_ts,
                status="live",
                rules_version=rules_version,
                created_ts=time.time(),
                owner=owner,
                meta={
                    "dir": to_stored(folder, session_data_dir(s)),  # relative to the data directory
                    "source_start_s": source_start_s,
                    "asr_done_s": 0.0,
                    "analyzed_s": 0.0,
                    **({"video_expected": True, "video_done_s": 0.0} if video else {}),
                    **({"media_gap_s": media_gap_s} if media_gap_s is not None else {}),
                    **({"hls_join": hls_join} if hls_join is not None else {}),
                },
            )
        )
        gap = s.scalar(
            select(BroadcastGap)
            .where(BroadcastGap.stream_id == stream_id, BroadcastGap.end_ts.is_(None))
            .order_by(BroadcastGap.start_ts.desc())
        )
        prev = s.scalar(
            select(Broadcast)
            .where(Broadcast.stream_id == stream_id, Broadcast.kind == "live", Broadcast.id != broadcast_id)
            .order_by(Broadcast.started_ts.desc())
        )
        if gap is not None:
            if (
                media_gap_s is not None
                and prev is not None
                and prev.ended_ts == gap.start_ts
                and prev.started_ts is not None
                and prev.duration_s is not None
            ):
                gap.start_ts = prev.started_ts + prev.duration_s
                gap.end_ts = gap.start_ts + media_gap_s
                gap.reason = (
                    f"{gap.reason}; {media_gap_s:.2f} s of media not recorded (source clock)"
                    if media_gap_s > 0
                    else f"{gap.reason}; no media lost (rejoined where the recording stopped)"
                )
            else:
                gap.end_ts = started_ts
            return
        if prev is not None and prev.ended_ts is not None and prev.ended_ts < started_ts:
            s.add(
                BroadcastGap(
                    stream_id=stream_id, start_ts=prev.ended_ts, end_ts=started_ts, reason="not monitored"
                )
            )

    @staticmethod
    def end_broadcast(s: Session, broadcast_id: str, ended_ts: float, end_s: float, reason: str) -> None:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        b.ended_ts = ended_ts
        b.duration_s = end_s
        if b.status == "live":
            b.status = "ended"
        b.meta = {**(b.meta or {}), "end_reason": reason}
        if b.stream_id:
            s.add(BroadcastGap(stream_id=b.stream_id, start_ts=ended_ts, end_ts=None, reason=reason))

    @staticmethod
    def refine_start(s: Session, broadcast_id: str, started_ts: float) -> None:
        b = s.get(Broadcast, broadcast_id)
        if b is not None and (b.started_ts is None or started_ts < b.started_ts):
            b.started_ts = started_ts

    @staticmethod
    def add_segment(
        s: Session,
        broadcast_id: str,
        seq: int,
        path: str,
        start_s: float,
        duration_s: float,
        size: int,
        created_ts: float,
        hls_seq: int | None = None,
    ) -> None:
        """A recorded file's row; its path is stored relative to the data directory (store.paths), so
        the recordings stay found when the data directory moves."""
        if hls_seq is not None:  # where a restarted monitor rejoins the playlist (Monitor.start)
            b = s.get(Broadcast, broadcast_id)
            if b is not None and (b.meta or {}).get("hls_last_seq", -1) < hls_seq:
                b.meta = {**(b.meta or {}), "hls_last_seq": hls_seq}
        exists = s.scalar(
            select(MediaSegmentRow.id).where(
                MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.seq == seq
            )
        )
        if exists is None:
            s.add(
                MediaSegmentRow(
                    broadcast_id=broadcast_id,
                    seq=seq,
                    path=to_stored(path, session_data_dir(s)),
                    start_s=start_s,
                    duration_s=duration_s,
                    status="recorded",
                    size=size,
                    created_ts=created_ts,
                )
            )

    # -- transcript -----------------------------------------------------------------------------------

    @staticmethod
    def store_transcript(
        s: Session, broadcast_id: str, utterances: Sequence[Utterance], done_s: float, final: bool
    ) -> None:
        """Utterances and the ASR watermark together; files before the watermark become 'transcribed'."""
        for u in utterances:
            s.add(repo.utterance_to_row(broadcast_id, u))
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        meta = dict(b.meta or {})
        meta["asr_done_s"] = max(float(meta.get("asr_done_s", 0.0)), done_s)
        if final:
            meta["asr_complete"] = True
        b.meta = meta
        cond = [MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.status == "recorded"]
        if not final:
            cond.append(MediaSegmentRow.start_s + MediaSegmentRow.duration_s <= done_s)
        s.execute(update(MediaSegmentRow).where(*cond).values(status="transcribed"))

    @staticmethod
    def store_captions(
        s: Session,
        broadcast_id: str,
        captions: Sequence[Utterance],
        done_s: float,
        final: bool,
        resume_s: float | None = None,
    ) -> None:
        """Captions the video worker read (analysed in this same transaction) and its watermark.

        A caption already stored (same text and first moment: read again after a restart) is skipped.
        """
        stored = {
            (r.text, round(r.start_s, 2))
            for r in s.scalars(
                select(UtteranceRow).where(
                    UtteranceRow.broadcast_id == broadcast_id,
                    UtteranceRow.source == "screen",
                    UtteranceRow.start_s >= min((u.start_s for u in captions), default=0.0) - 0.01,
                )
            )
        }
        for u in captions:
            if (u.text, round(u.start_s, 2)) in stored:
                continue
            row = repo.utterance_to_row(broadcast_id, u)
            row.analyzed = True
            s.add(row)
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        meta = dict(b.meta or {})
        meta["video_done_s"] = max(float(meta.get("video_done_s", 0.0)), done_s)
        meta["video_resume_s"] = (
            meta["video_done_s"] if resume_s is None else min(resume_s, meta["video_done_s"])
        )
        if final:
            meta["video_complete"] = True
            if meta.get("analysis_complete") and b.status == "ended":
                b.status = "done"
        b.meta = meta

    @staticmethod
    def mark_analyzed(
        s: Session, broadcast_id: str, indexes: Iterable[int], analyzed_s: float, final: bool
    ) -> None:
        idx = list(indexes)
        if idx:
            s.execute(
                update(UtteranceRow)
                .where(
                    UtteranceRow.broadcast_id == broadcast_id,
                    UtteranceRow.source == "speech",
                    UtteranceRow.idx.in_(idx),
                )
                .values(analyzed=True)
            )
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        meta = dict(b.meta or {})
        meta["analyzed_s"] = max(float(meta.get("analyzed_s", 0.0)), analyzed_s)
        if final:
            meta["analysis_complete"] = True
            if b.status == "ended" and (not meta.get("video_expected") or meta.get("video_complete")):
                b.status = "done"
        b.meta = meta
        cond = [MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.status == "transcribed"]
        if not final:
            cond.append(MediaSegmentRow.start_s + MediaSegmentRow.duration_s <= analyzed_s)
        s.execute(update(MediaSegmentRow).where(*cond).values(status="analyzed"))

    # -- alerts ---------------------------------------------------------------------------------------

    @staticmethod
    def upsert_alert(s: Session, alert: Alert, payload: dict[str, Any], stream_id: str) -> bool:
        """Store a new alert, or bring a stored one up to date with its grown group. True if new."""
        if repo.save_alert(s, alert, payload, None, stream_id):
            return True
        row = s.get(AlertRow, alert.alert_id)
        assert row is not None
        if row.evidence_status != "pending":
            return False  # evidence is cut and hashed: the alert is closed
        row.code, row.rule_id, row.severity, row.law = alert.code, alert.rule_id, alert.severity, alert.law
        row.start_s, row.end_s, row.text, row.context = alert.start_s, alert.end_s, alert.text, alert.context
        row.payload = payload
        s.execute(delete(DetectionRow).where(DetectionRow.alert_id == alert.alert_id))
        for d in alert.detections:
            s.add(_detection_row(alert, d))
        return False

    @staticmethod
    def repeats(
        s: Session, alert: Alert, stream_id: str, source_start_s: float | None, window_s: float = 30.0
    ) -> str | None:
        """The id of an alert of an *earlier connection* to the same stream that this one repeats.

        After a reconnect or a restart the new connection may begin a few seconds before the old one
        ended (an HLS player starts behind the live edge), so the same words are recorded twice. The
        source's own clock (`source_start_s`, ffmpeg's input start time) places both on one timeline;
        an alert of the same category and source overlapping on it, at nearly the same wall-clock time
        (within `window_s`: a replayed file is a new broadcast, not a repeat), is the same violation.
        When the recorder found the source's clock continuous across the reconnect (`media_gap_s` in
        the broadcast's meta), the wall-clock window widens to an hour.
        Without a source clock nothing counts as a repeat.
        """
        if source_start_s is None or alert.start_ts is None:
            return None
        meta = s.scalar(select(Broadcast.meta).where(Broadcast.id == alert.broadcast_id)) or {}
        if meta.get("media_gap_s") is not None:
            # The recorder found the source's clock continuous across the reconnect (see
            # ingest.recorder.media_gap): a rejoin that asked the playlist again from older segments
            # (after a full disk) repeats media recorded long before on the wall clock, so only the
            # source clock decides, within the hour.
            window_s = max(window_s, 3600.0)
        lo, hi = source_start_s + alert.start_s, source_start_s + alert.end_s
        rows = s.execute(
            select(AlertRow.id, AlertRow.start_s, AlertRow.end_s, Broadcast.meta)
            .join(Broadcast, Broadcast.id == AlertRow.broadcast_id)
            .where(
                AlertRow.stream_id == stream_id,
                AlertRow.broadcast_id != alert.broadcast_id,
                AlertRow.category == alert.category,
                AlertRow.source == alert.source,
                AlertRow.start_ts.between(alert.start_ts - window_s, alert.start_ts + window_s),
            )
        ).all()
        for other_id, o_start, o_end, meta in rows:
            o0 = (meta or {}).get("source_start_s")
            if o0 is not None and o0 + o_start <= hi + 0.5 and lo <= o0 + o_end + 0.5:
                return str(other_id)
        return None

    @staticmethod
    def pin_range(s: Session, broadcast_id: str, start_s: float, end_s: float) -> None:
        s.execute(
            update(MediaSegmentRow)
            .where(
                MediaSegmentRow.broadcast_id == broadcast_id,
                MediaSegmentRow.start_s < end_s,
                MediaSegmentRow.start_s + MediaSegmentRow.duration_s > start_s,
            )
            .values(pinned=True)
        )

    @staticmethod
    def evidence_deferred(s: Session, alert_id: str, error: str) -> None:
        """Evidence not written yet for a reason that may pass (a full disk): the alert stays pending,
        and says why until its evidence is written (which replaces the payload)."""
        row = s.get(AlertRow, alert_id)
        if row is not None and row.evidence_status == "pending":
            row.payload = {**(row.payload or {}), "evidence_error": error}

    @staticmethod
    def evidence_failed(s: Session, alert_id: str, error: str) -> None:
        row = s.get(AlertRow, alert_id)
        if row is not None:
            row.evidence_status = "failed"
            row.payload = {**(row.payload or {}), "evidence_error": error}


def stored_claims(s: Session, broadcast_id: str) -> list[PriceClaim]:
    """The price claims stored for a broadcast (to carry on after a restart)."""
    rows = s.scalars(
        select(PriceClaimRow)
        .where(PriceClaimRow.broadcast_id == broadcast_id)
        .order_by(PriceClaimRow.start_s, PriceClaimRow.id)
    ).all()
    return [claim_from_row(r) for r in rows]


def _detection_row(alert: Alert, d: Detection) -> DetectionRow:
    return DetectionRow(
        alert_id=alert.alert_id,
        broadcast_id=alert.broadcast_id,
        rule_id=d.rule_id,
        category=d.category,
        code=d.code,
        severity=d.severity,
        source=d.source,
        start_s=d.start_s,
        end_s=d.end_s,
        matched=d.matched,
        text=d.text,
        score=d.score,
        mode=d.mode,
        details=repo._jsonable(d.details),
    )


def detection_from_row(r: DetectionRow, law: str) -> Detection:
    return Detection(
        rule_id=r.rule_id,
        category=r.category,
        code=r.code,
        severity=r.severity,
        law=law,
        source=r.source,
        start_s=r.start_s,
        end_s=r.end_s,
        matched=r.matched,
        text=r.text,
        score=r.score,
        mode=r.mode,
        details=dict(r.details or {}),
    )


def alert_from_row(s: Session, row: AlertRow) -> Alert:
    dets = s.scalars(
        select(DetectionRow).where(DetectionRow.alert_id == row.id).order_by(DetectionRow.start_s)
    ).all()
    return Alert(
        alert_id=row.id,
        broadcast_id=row.broadcast_id,
        category=row.category,
        code=row.code,
        rule_id=row.rule_id,
        severity=row.severity,
        law=row.law,
        source=row.source,
        start_s=row.start_s,
        end_s=row.end_s,
        text=row.text,
        context=row.context,
        rules_version=row.rules_version,
        detections=tuple(detection_from_row(d, row.law) for d in dets),
        start_ts=row.start_ts,
    )


def next_caption_index(s: Session, broadcast_id: str) -> int:
    last = s.scalar(
        select(func.max(UtteranceRow.idx)).where(
            UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == "screen"
        )
    )
    return 0 if last is None else int(last) + 1


def next_utterance_index(s: Session, broadcast_id: str) -> int:
    n = s.scalar(
        select(func.max(UtteranceRow.idx)).where(
            UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == "speech"
        )
    )
    return 0 if n is None else int(n) + 1


def rescan_segments(s: Session, broadcast_id: str, folder: Path) -> float:
    """After a crash: add rows for files on disk the database missed. Returns the recorded length (s).

    `folder` is where the broadcast's files are now (its stored folder resolved against the data
    directory); rows are stored relative to the data directory like `LiveStore.add_segment`'s."""
    known = {
        seq: (st, d)
        for seq, st, d in s.execute(
            select(MediaSegmentRow.seq, MediaSegmentRow.start_s, MediaSegmentRow.duration_s).where(
                MediaSegmentRow.broadcast_id == broadcast_id
            )
        )
    }
    listed = {
        int(Path(name).stem.split("_")[-1]): (st, en)
        for name, st, en in read_segment_list(folder / ffmpeg.SEGMENT_LIST)
    }
    end_s = max((st + d for st, d in known.values()), default=0.0)
    for path in sorted(folder.glob("seg_*.ts")):
        seq = int(path.stem.split("_")[-1])
        if seq in known or path.stat().st_size == 0:
            continue
        if seq in listed:
            start, duration = listed[seq][0], listed[seq][1] - listed[seq][0]
        else:
            try:
                duration = ffmpeg.probe(path).duration_s
            except Exception:
                logger.warning("recorded file %s is unreadable; left out", path, exc_info=True)
                continue
            start = end_s
        s.add(
            MediaSegmentRow(
                broadcast_id=broadcast_id,
                seq=seq,
                path=to_stored(path, session_data_dir(s)),
                start_s=start,
                duration_s=duration,
                status="recorded",
                size=path.stat().st_size,
                created_ts=path.stat().st_mtime,
            )
        )
        end_s = max(end_s, start + duration)
    return end_s
