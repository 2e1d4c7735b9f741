"""The ingest worker (ingest/worker.py) with fakes around it: fake recorders driven by the test, each on
its own thread as a real one is, and a port that records what it was told and what the worker said at
that moment. The real recorders (ffmpeg, streamlink, HLS) are exercised by tests/test_live*.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.config import IngestConfig
from ingest.recorder import Recorder, RecorderSink
from ingest.types import (
    BroadcastEnded,
    BroadcastStarted,
    IngestState,
    MediaSegment,
    RecorderResume,
    SegmentRecorded,
)
from ingest.worker import IngestPort, IngestWorker, RecorderSpec


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class FakeRecorder:
    """Stands in for `ingest.recorder.Recorder`: the test hands it events, which it reports to its
    sink from its own thread, in order, as a recorder does."""

    def __init__(self, spec: RecorderSpec, sink: RecorderSink, resume: RecorderResume | None) -> None:
        self.spec, self.sink, self.resume = spec, sink, resume
        self.reconnects = 0
        self.started = threading.Event()
        self.stop_called = threading.Event()
        self.release = threading.Event()  # what a stop waits for (a connection ending gracefully)
        self.release.set()
        self._events: list[object] = []
        self._cv = threading.Condition()
        self.reported = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started.set()
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_called.set()
        self.release.wait(timeout)
        with self._cv:
            self._events.append(None)
            self._cv.notify()
        self._thread.join(timeout)

    def emit(self, *events: object) -> None:
        with self._cv:
            self._events.extend(events)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._events:
                    self._cv.wait()
                ev = self._events.pop(0)
            if ev is None:
                return
            if isinstance(ev, BroadcastStarted):
                self.sink.broadcast_started(ev)
            elif isinstance(ev, SegmentRecorded):
                self.sink.segment_recorded(ev)
            elif isinstance(ev, BroadcastEnded):
                self.sink.broadcast_ended(ev)
            elif isinstance(ev, IngestState):
                self.sink.state_changed(ev)
            self.reported += 1


class FakePort:
    """Records each call with what the worker answered for the broadcast at that moment."""

    def __init__(self, worker: Callable[[], IngestWorker], resume: dict[str, RecorderResume]) -> None:
        self._worker = worker
        self._resume = resume
        self.calls: list[tuple[str, str, object, tuple[float, bool] | None]] = []
        self.lock = threading.Lock()
        self.asked: list[str] = []

    def resume_point(self, stream_id: str) -> RecorderResume | None:
        self.asked.append(stream_id)
        return self._resume.get(stream_id)

    def _note(self, kind: str, stream_id: str, event: object, broadcast_id: str | None) -> None:
        seen = self._worker().recording(broadcast_id) if broadcast_id is not None else None
        with self.lock:
            self.calls.append((kind, stream_id, event, seen))

    def broadcast_started(self, event: BroadcastStarted) -> None:
        self._note("started", event.stream_id, event, event.broadcast_id)

    def segment_recorded(self, event: SegmentRecorded) -> None:
        sid = event.segment.broadcast_id.split("-")[0]
        self._note("segment", sid, event, event.segment.broadcast_id)

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        self._note("ended", event.stream_id, event, event.broadcast_id)

    def state_changed(self, event: IngestState) -> None:
        self._note("state", event.stream_id, event, None)

    def of(self, stream_id: str) -> list[tuple[str, object, tuple[float, bool] | None]]:
        with self.lock:
            return [(k, e, seen) for k, sid, e, seen in self.calls if sid == stream_id]


def _spec(sid: str) -> RecorderSpec:
    return RecorderSpec(sid, f"hls://example.invalid/{sid}.m3u8", IngestConfig(), keep_video=sid == "a")


def _build(
    tmp_path: Path,
    sids: list[str],
    resume: dict[str, RecorderResume] | None = None,
    stop_timeout_s: float = 20.0,
) -> tuple[IngestWorker, FakePort, dict[str, FakeRecorder]]:
    recorders: dict[str, FakeRecorder] = {}

    def make(spec: RecorderSpec, sink: RecorderSink, res: RecorderResume | None) -> FakeRecorder:
        rec = recorders[spec.stream_id] = FakeRecorder(spec, sink, res)
        return rec

    holder: list[IngestWorker] = []
    port = FakePort(lambda: holder[0], resume or {})
    port_typed: IngestPort = port
    w = IngestWorker(
        [_spec(s) for s in sids], port_typed, tmp_path, recorder=make, stop_timeout_s=stop_timeout_s
    )
    holder.append(w)
    return w, port, recorders


def _seg(bid: str, seq: int, start_s: float, dur: float = 2.0) -> SegmentRecorded:
    return SegmentRecorded(
        MediaSegment(bid, seq, f"/rec/{bid}/seg_{seq:06d}.ts", start_s, dur), 1000, 100.0 + seq
    )


def test_start_builds_one_recorder_per_stream_resuming_where_the_last_run_stopped(tmp_path: Path) -> None:
    res = RecorderResume(hls_last_seq=41, source_end_s=1234.5, end_ts=99.0)
    w, port, recs = _build(tmp_path, ["a", "b"], {"a": res})
    assert recs == {}
    w.start()
    assert port.asked == ["a", "b"]
    assert recs["a"].resume == res and recs["b"].resume is None
    assert recs["a"].spec.keep_video and not recs["b"].spec.keep_video
    assert all(r.started.is_set() and r.sink is w for r in recs.values())
    snap = w.snapshot()
    assert list(snap) == ["a", "b"] and all(s.state is None and s.broadcast_id is None for s in snap.values())
    with pytest.raises(RuntimeError):
        w.start()
    w.stop()


def test_events_reach_the_port_in_order_and_the_recorded_length_follows_them(tmp_path: Path) -> None:
    w, port, recs = _build(tmp_path, ["a"])
    w.start()
    rec = recs["a"]
    bid = "a-20260101T000000Z-0001"
    rec.emit(
        IngestState("a", "connecting", "url", 1.0),
        BroadcastStarted("a", bid, "/rec/a", "url", 10.0, source_start_s=5.0),
        IngestState("a", "recording", bid, 2.0),
        _seg(bid, 0, 0.0),
        _seg(bid, 1, 2.0),
    )
    wait_for(lambda: rec.reported == 5, "five events")
    snap = w.snapshot()["a"]
    assert snap.broadcast_id == bid and snap.state is not None and snap.state.state == "recording"
    assert w.recording(bid) == (4.0, False)
    # the port saw the broadcast before any file counted as recorded, and each file before it counted
    calls = [(k, seen) for k, _, seen in port.of("a")]
    assert calls == [
        ("state", None),
        ("started", (0.0, False)),
        ("state", None),
        ("segment", (0.0, False)),
        ("segment", (2.0, False)),
    ]
    rec.reconnects = 2
    rec.emit(
        BroadcastEnded("a", bid, 20.0, 4.5, "connection ended"), IngestState("a", "reconnecting", "x", 3.0)
    )
    wait_for(lambda: rec.reported == 7, "the end")
    assert port.of("a")[5][2] == (4.0, False)  # over only once the port has the end
    assert w.recording(bid) == (4.5, True)
    snap = w.snapshot()["a"]
    assert snap.broadcast_id is None and snap.reconnects == 2
    assert snap.state is not None and snap.state.state == "reconnecting"
    w.stop()


def test_a_late_end_of_an_earlier_broadcast_keeps_the_current_one(tmp_path: Path) -> None:
    w, _, recs = _build(tmp_path, ["a"])
    w.start()
    rec = recs["a"]
    rec.emit(
        BroadcastStarted("a", "a-1", "/rec/a1", "url", 10.0),
        BroadcastStarted("a", "a-2", "/rec/a2", "url", 20.0),
        BroadcastEnded("a", "a-1", 30.0, 8.0, "x"),
    )
    wait_for(lambda: rec.reported == 3, "three events")
    assert w.snapshot()["a"].broadcast_id == "a-2"
    assert w.recording("a-1") == (8.0, True) and w.recording("a-2") == (0.0, False)
    w.stop()


def test_recorded_until_only_grows_and_stays_over(tmp_path: Path) -> None:
    w, _, _ = _build(tmp_path, ["a"])
    assert w.recording("old") is None
    w.recorded_until("old", 30.0, done=True)  # a broadcast of the last run, resumed
    w.recorded_until("old", 12.0)
    assert w.recording("old") == (30.0, True)


def test_streams_record_side_by_side_each_in_order(tmp_path: Path) -> None:
    sids = ["a", "b", "c"]
    w, port, recs = _build(tmp_path, sids)
    w.start()
    n = 60
    for sid in sids:
        bid = f"{sid}-x"
        recs[sid].emit(
            BroadcastStarted(sid, bid, f"/rec/{sid}", "url", 1.0),
            *[_seg(bid, i, 2.0 * i) for i in range(n)],
            BroadcastEnded(sid, bid, 2.0, 2.0 * n, "source ended"),
        )
    wait_for(lambda: all(r.reported == n + 2 for r in recs.values()), "every stream's events")
    for sid in sids:
        calls = port.of(sid)
        assert [k for k, _, _ in calls] == ["started", *["segment"] * n, "ended"]
        ends = [seen[0] for k, _, seen in calls if k == "segment" and seen is not None]
        assert ends == [2.0 * i for i in range(n)]  # each file seen by the port before it counted
        assert w.recording(f"{sid}-x") == (2.0 * n, True)
    w.stop()


def test_stop_ends_every_recorder_at_once_and_waits_for_them(tmp_path: Path) -> None:
    w, _, recs = _build(tmp_path, ["a", "b"])
    w.start()
    for r in recs.values():
        r.release.clear()  # each connection takes a while to end
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    # both were asked to stop although neither has finished: stopped side by side, not one after the other
    wait_for(lambda: all(r.stop_called.is_set() for r in recs.values()), "both stops")
    assert stopper.is_alive()
    for r in recs.values():
        r.release.set()
    stopper.join(5)
    assert not stopper.is_alive()


def test_stop_does_not_wait_forever_for_a_hung_recorder(tmp_path: Path) -> None:
    w, _, recs = _build(tmp_path, ["a"], stop_timeout_s=0.2)
    w.start()
    recs["a"].release.clear()
    t0 = time.monotonic()
    w.stop()
    assert time.monotonic() - t0 < 3.0
    recs["a"].release.set()


def test_the_default_recorder_is_the_real_one_with_the_spec_and_resume(tmp_path: Path) -> None:
    w, _, _ = _build(tmp_path, ["a"])
    res = RecorderResume(7, 100.0, 50.0)
    rec = w._recorder(_spec("a"), w, res)  # built, not started: no ffmpeg here
    assert isinstance(rec, Recorder)
    assert (rec.stream_id, rec.url, rec.keep_video, rec.root, rec.sink) == (
        "a",
        "hls://example.invalid/a.m3u8",
        True,
        tmp_path,
        w,
    )
    assert rec.via == "streamlink" and rec._hls_last_done == 7 and rec._last_source_end == 100.0
    assert rec.reconnects == 0 and not rec.alive
