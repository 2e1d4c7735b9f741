"""The live video worker's bounded queue (app/live_video.py): a job that finds it full is never dropped.
Its broadcast is marked behind and read back from the ledger (here a list standing in for the recorded
file rows) once there is room, in order, each file once, and then its end.

The files do not exist: each one reads as unreadable (a gap in the video, counted) and still moves the
video watermark (`done_s`), which is what these tests follow; no decoder, OCR or NudeNet model runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from app.live_video import VideoWorker
from app.monitor_resume import video_files
from detectors.types import VideoBatch
from detectors.video_config import VideoConfig
from ingest.types import MediaSegment
from store.db import Database
from store.live import LiveStore
from store.writer import DbWriter


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


CFG = VideoConfig.model_validate({"screen": {"enabled": False}, "visual": {"enabled": False}})


class Ledger:
    """The recorded file rows: a file is added before it is submitted, as the ingest port does."""

    def __init__(self) -> None:
        self.rows: dict[str, list[MediaSegment]] = {}
        self.reads: list[tuple[str, int]] = []
        self.gate = threading.Event()  # a read waits for it (a busy database writer)
        self.gate.set()
        self.reading = threading.Event()

    def add(self, bid: str, seq: int, dur: float = 2.0) -> MediaSegment:
        seg = MediaSegment(bid, seq, f"/nonexistent/{bid}/seg_{seq:06d}.ts", seq * dur, dur)
        self.rows.setdefault(bid, []).append(seg)
        return seg

    def reread(self, bid: str, from_seq: int) -> Sequence[MediaSegment]:
        self.reads.append((bid, from_seq))
        self.reading.set()
        self.gate.wait(10)
        return [s for s in self.rows.get(bid, []) if s.seq >= from_seq]


class Batches:
    def __init__(self) -> None:
        self.got: list[VideoBatch] = []
        self.lock = threading.Lock()

    def deliver(self, batch: VideoBatch) -> None:
        with self.lock:
            self.got.append(batch)

    def of(self, bid: str) -> list[VideoBatch]:
        with self.lock:
            return [b for b in self.got if b.broadcast_id == bid]

    def final(self, bid: str) -> bool:
        return any(b.final for b in self.of(bid))


def _expect_all(batches: Batches, ledger: Ledger, bid: str) -> None:
    got = batches.of(bid)
    files = [b for b in got if not b.final]
    assert [b.done_s for b in files] == [s.end_s for s in ledger.rows[bid]]  # every file, once, in order
    assert got[-1].final and [b.final for b in got].count(True) == 1


def test_a_full_queue_loses_no_file_and_no_end() -> None:
    ledger, batches = Ledger(), Batches()
    w = VideoWorker(CFG, batches.deliver, ledger.reread, max_queue=4)
    # the worker is not running yet (as during the monitor's resume): the queue fills at once
    for i in range(25):
        for bid in ("b1", "b2"):
            w.submit(bid, "s", ledger.add(bid, i))
    w.end("b1", "s")
    w.end("b2", "s")
    st = w.queue_status()
    assert st["backlog_files"] == 4 and st["max_queue"] == 4
    assert st["behind"] == {
        "b1": {"from_seq": 2, "ended": True, "files_left_out": 24},
        "b2": {"from_seq": 2, "ended": True, "files_left_out": 24},
    }
    w.start()
    try:
        wait_for(lambda: batches.final("b1") and batches.final("b2"), "both broadcasts read to their end")
    finally:
        w.stop()
    _expect_all(batches, ledger, "b1")
    _expect_all(batches, ledger, "b2")
    assert w.stats.files == 50 and w.stats.reread_files == 46 and w.stats.queue_full == 48
    assert w.queue_status()["behind"] == {} and w.backlog() == 0


def test_files_that_come_while_a_broadcast_is_read_back_are_read_after_it() -> None:
    ledger, batches = Ledger(), Batches()
    w = VideoWorker(CFG, batches.deliver, ledger.reread, max_queue=2)
    for i in range(6):
        w.submit("b", "s", ledger.add("b", i))
    ledger.gate.clear()  # the first read back waits, while the recorder goes on
    w.start()
    try:
        wait_for(ledger.reading.is_set, "the first read back")
        for i in range(6, 10):
            w.submit("b", "s", ledger.add("b", i))  # folded into the mark: the broadcast is still behind
        assert w.queue_status()["behind"]["b"]["files_left_out"] == 8
        ledger.gate.set()
        w.end("b", "s")
        wait_for(lambda: batches.final("b"), "the end")
    finally:
        w.stop()
    _expect_all(batches, ledger, "b")
    assert ledger.reads[0] == ("b", 2)
    assert w.queue_status()["behind"] == {}


def test_a_file_read_back_before_its_own_submit_came_is_read_once() -> None:
    # the ingest port queues a file's row before it submits the file: a read back can find the row first
    ledger, batches = Ledger(), Batches()
    w = VideoWorker(CFG, batches.deliver, ledger.reread, max_queue=1)
    w.submit("b", "s", ledger.add("b", 0))
    w.submit("b", "s", ledger.add("b", 1))  # left out: b is behind from file 1
    late = ledger.add("b", 2)  # its row is in the ledger, its submit not yet made
    w.start()
    try:
        wait_for(lambda: w.stats.files == 3 and not w.queue_status()["behind"], "the catch-up")
        w.submit("b", "s", late)  # read back already: not read again
        w.submit("b", "s", ledger.add("b", 3))  # caught up: queued as usual
        w.end("b", "s")
        wait_for(lambda: batches.final("b"), "the end")
    finally:
        w.stop()
    _expect_all(batches, ledger, "b")


def test_with_room_in_the_queue_nothing_is_read_back() -> None:
    ledger, batches = Ledger(), Batches()
    w = VideoWorker(CFG, batches.deliver, ledger.reread, max_queue=64)
    w.start()
    try:
        for i in range(10):
            w.submit("b", "s", ledger.add("b", i))
        w.end("b", "s")
        wait_for(lambda: batches.final("b"), "the end")
    finally:
        w.stop()
    _expect_all(batches, ledger, "b")
    assert ledger.reads == [] and w.stats.queue_full == 0


def test_the_ledger_read_back_sees_every_file_row_queued_before_it(tmp_path: Path) -> None:
    # the monitor's `reread` (app/monitor_resume.py video_files) reads through the database's one writer:
    # the ingest port queues a file's row before it submits the file, so no file left out is missed
    db = Database.for_data_dir(tmp_path)
    writer = DbWriter(db)
    writer.start()
    try:
        folder = tmp_path / "recordings" / "s" / "b"
        writer.submit(
            partial(
                LiveStore.start_broadcast,
                broadcast_id="b",
                stream_id="s",
                url="u",
                name="s",
                folder=str(folder),
                started_ts=1000.0,
                source_start_s=None,
                rules_version="v",
                video=True,
            )
        )
        for i in range(6):
            writer.submit(
                partial(
                    LiveStore.add_segment,
                    broadcast_id="b",
                    seq=i,
                    path=str(folder / f"seg_{i:06d}.ts"),
                    start_s=2.0 * i,
                    duration_s=2.0,
                    size=100,
                    created_ts=1002.0 + 2 * i,
                )
            )
        got = video_files(SimpleNamespace(writer=writer, db=db), "b", 3)  # type: ignore[arg-type]
    finally:
        writer.stop()
    assert [(s.seq, s.start_s, s.end_s) for s in got] == [(3, 6.0, 8.0), (4, 8.0, 10.0), (5, 10.0, 12.0)]
    assert [Path(s.path) for s in got] == [folder / f"seg_{i:06d}.ts" for i in (3, 4, 5)]
