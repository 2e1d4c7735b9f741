"""The monitor's database writer on a full disk (store.writer.DbWriter): a write that fails for want of
space is kept and retried in order, later writes wait behind it in the bounded queue, nothing is dropped
or stored twice, and the condition is visible (status, log, ops event). The disk is simulated by jobs
that raise SQLite's own "database or disk is full" while a flag is set (the real thing, a tmpfs filled
to the last byte under a running monitor, is tests/faults/test_faults_db_disk_full.py)."""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ingest.disk import no_space
from review.monitor_status import db_write_problems, metrics_text
from store.db import Database
from store.writer import DbWriter


class Disk:
    """A switchable full disk: `full` makes every write raise as SQLite does (wrapped by SQLAlchemy)."""

    def __init__(self) -> None:
        self.full = False
        self.refusals = 0

    def write(self, n: int) -> Callable[[Session], int]:
        def job(s: Session) -> int:
            s.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            if self.full:
                self.refusals += 1
                raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
            return n

        job.__qualname__ = f"write_{n}"
        return job


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with d.session() as s, s.begin():
        s.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))  # a second insert of n would fail
    return d


def rows(db: Database) -> list[int]:
    with db.session() as s:
        return [int(r[0]) for r in s.execute(text("SELECT n FROM t ORDER BY rowid"))]


def wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_disk_holds_writes_in_order_and_loses_none(db: Database, tmp_path: Path) -> None:
    disk = Disk()
    events: list[tuple[str, dict[str, Any]]] = []
    w = DbWriter(db, retry_min_s=0.05, retry_max_s=0.2, on_event=lambda e, **f: events.append((e, f)))
    w.start()
    done: list[int] = []
    for n in range(5):
        w.submit(disk.write(n), then=done.append)
    wait(lambda: len(done) == 5)
    disk.full = True
    for n in range(5, 15):
        w.submit(disk.write(n), then=done.append)
    wait(lambda: disk.refusals >= 3)
    st = w.status()
    space = st["waiting_for_space"]
    assert space is not None and space["where"] == str(tmp_path / "db.sqlite")
    assert "no space left on device for the database" in space["error"] and str(tmp_path) in space["error"]
    assert "nothing is dropped" in space["error"] and space["held"] >= 10 and st["backlog"] >= 10
    assert rows(db) == list(range(5)) and done == list(range(5))  # nothing of the held work half-written
    (line,) = db_write_problems(st)
    assert "waiting for disk space" in line and str(tmp_path / "db.sqlite") in line
    assert "livewatch_monitor_db_waiting_for_space 1" in metrics_text(True, [], db_write=st)
    disk.full = False
    wait(lambda: len(done) == 15)
    w.stop()
    assert rows(db) == list(range(15)) and done == list(range(15))  # in order, once each
    st = w.status()
    assert st["waiting_for_space"] is None and st["space_episodes"] == 1 and st["failed"] == 0
    assert [e for e, _ in events] == ["database_disk_full", "database_disk_space_back"]
    assert events[0][1]["where"] == str(tmp_path / "db.sqlite")


def test_a_full_queue_holds_the_submitter_back_and_says_so(db: Database) -> None:
    disk = Disk()
    events: list[str] = []
    w = DbWriter(db, max_queue=3, retry_min_s=0.05, retry_max_s=0.1, on_event=lambda e, **f: events.append(e))
    w.start()
    disk.full = True
    done: list[int] = []
    submitted = threading.Event()

    def producer() -> None:
        for n in range(12):
            w.submit(disk.write(n), then=done.append)
        submitted.set()

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    wait(lambda: w.status()["queue_full"] is not None)
    assert not submitted.is_set()  # held back, not dropped
    full = w.status()["queue_full"]
    assert "queue full (3 writes waiting" in full["message"] and "nothing is dropped" in full["message"]
    assert any("queue full" in p for p in db_write_problems(w.status()))
    assert w.backlog <= 4  # bounded: the queue plus the held job
    disk.full = False
    assert submitted.wait(10)
    wait(lambda: len(done) == 12)
    w.stop()
    assert rows(db) == list(range(12)) and done == list(range(12))
    assert w.status()["queue_full"] is None
    assert events.count("database_writer_queue_full") == 1


def test_call_does_not_wait_on_a_full_disk(db: Database) -> None:
    disk = Disk()
    w = DbWriter(db, retry_min_s=0.05, retry_max_s=0.1)
    w.start()
    disk.full = True
    with pytest.raises(OperationalError, match="database or disk is full"):
        w.call(disk.write(1))
    w.submit(disk.write(2))  # held
    wait(lambda: w.waiting_for_space)
    with pytest.raises(TimeoutError, match="no space left on device for the database"):
        w.call(disk.write(3), timeout=0.3)
    disk.full = False
    wait(lambda: not w.waiting_for_space and w.backlog == 0)
    assert w.call(lambda s: 42) == 42
    w.stop()
    assert rows(db) == [2]  # the timed-out call never ran


def test_other_errors_fail_the_job_and_are_shown(db: Database) -> None:
    w = DbWriter(db)
    w.start()

    def bad(s: Session) -> None:
        raise ValueError("not a disk problem")

    w.submit(bad)
    w.submit(Disk().write(7))
    wait(lambda: rows(db) == [7])
    w.stop()
    st = w.status()
    assert st["failed"] == 1 and st["waiting_for_space"] is None
    assert st["last_failure"]["error"] == "not a disk problem"
    (line,) = db_write_problems(st)
    assert "1 database write(s) failed and were not retried" in line and "not a disk problem" in line


def test_stop_gives_up_held_writes_after_its_timeout(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    disk = Disk()
    disk.full = True
    w = DbWriter(db, retry_min_s=0.05, retry_max_s=0.1)
    w.start()
    w.submit(disk.write(1))
    wait(lambda: w.waiting_for_space)
    t0 = time.monotonic()
    w.stop(timeout=0.5)
    assert time.monotonic() - t0 < 3.0
    assert w.abandoned == 1
    assert "given up" in caplog.text and "resumes from what the database holds" in caplog.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(text("t"))) == 0


def test_what_counts_as_no_space() -> None:
    class PgDiskFull(Exception):
        sqlstate = "53100"

    assert no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert no_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert no_space(sqlite3.OperationalError("database or disk is full"))
    assert no_space(OperationalError("INSERT", {}, PgDiskFull("could not extend file")))
    assert not no_space(OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")))
    assert not no_space(ValueError("x"))


def test_queue_full_notices_are_rate_limited(db: Database) -> None:
    """A queue that drains and refills while a burst is written is one problem for the ops webhook:
    each episode shows in the status and the log, the event at most once per `notice_every_s`."""
    now = [1000.0]
    events: list[str] = []
    w = DbWriter(
        db, max_queue=3, on_event=lambda e, **f: events.append(e), clock=lambda: now[0], notice_every_s=300.0
    )
    w._queue_full()
    assert w.status()["queue_full"] is not None and events == ["database_writer_queue_full"]
    w._full = None  # the queue had room again
    now[0] += 10.0
    w._queue_full()
    assert w.status()["queue_full"] is not None and len(events) == 1
    w._full = None
    now[0] += 300.0
    w._queue_full()
    assert len(events) == 2
