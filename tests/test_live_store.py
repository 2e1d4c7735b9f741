"""Live repository functions (app/live_store.py): repeats across connections, watermarks, the writer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from alerts.types import Alert
from asr.types import Utterance, Word
from detectors.types import Detection
from store.db import Database
from store.live import LiveStore
from store.models import AlertRow, Broadcast, MediaSegmentRow, UtteranceRow
from store.writer import DbWriter


def alert(aid: str, broadcast: str, start: float, end: float, start_ts: float, cat: str = "vulgar") -> Alert:
    d = Detection(
        rule_id="r",
        category=cat,
        code="C1",
        severity="high",
        law="",
        source="speech",
        start_s=start,
        end_s=end,
        matched="x",
        text="t",
    )
    return Alert(
        aid, broadcast, cat, "C1", "r", "high", "", "speech", start, end, "t", "", "v", (d,), start_ts
    )


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with d.session() as s, s.begin():
        for bid, src0, started in (("old", 100.0, 1000.0), ("new", 130.0, 1031.0), ("reset", 5.0, 1040.0)):
            LiveStore.start_broadcast(
                s,
                broadcast_id=bid,
                stream_id="room",
                url="u",
                name="",
                folder="/x",
                started_ts=started,
                source_start_s=src0,
                rules_version="v",
            )
            s.flush()
        LiveStore.upsert_alert(s, alert("a-old", "old", 28.0, 31.0, 1028.0), {}, "room")
    return d


def test_the_same_moment_of_the_source_in_a_new_connection_is_a_repeat(db: Database) -> None:
    with db.session() as s:
        # old: source 128-131; new starts at source 130, so its 0-1 s overlaps
        assert LiveStore.repeats(s, alert("x", "new", 0.0, 1.5, 1031.0), "room", 130.0) == "a-old"
        assert LiveStore.repeats(s, alert("x", "new", 5.0, 6.0, 1036.0), "room", 130.0) is None
        assert (
            LiveStore.repeats(s, alert("x", "new", 0.0, 1.5, 1031.0, cat="price_fraud"), "room", 130.0)
            is None
        )
        # a source clock that was reset does not line up with the old one
        assert LiveStore.repeats(s, alert("x", "reset", 0.0, 1.0, 1040.0), "room", 5.0) is None
        assert LiveStore.repeats(s, alert("x", "new", 0.0, 1.5, 1031.0), "room", None) is None


def test_a_rejoin_that_asks_older_segments_again_repeats_long_after_on_the_wall_clock(db: Database) -> None:
    """After a full disk the recorder asks the playlist again from older segments: the same moment of
    the source is recorded minutes later on the wall clock. With the source's clock found continuous
    (media_gap_s) it is still a repeat; without that, the wall-clock window keeps it a new alert."""
    with db.session() as s, s.begin():
        for bid, gap in (("rejoin", 0.0), ("unknown", None)):
            LiveStore.start_broadcast(
                s,
                broadcast_id=bid,
                stream_id="room",
                url="u",
                name="",
                folder="/x",
                started_ts=1300.0,
                source_start_s=126.0,
                rules_version="v",
                media_gap_s=gap,
            )
    with db.session() as s:
        # old: source 128-131, raised at wall 1028; the rejoin records source 128-131 at wall 1302
        late = alert("x", "rejoin", 2.0, 5.0, 1302.0)
        assert LiveStore.repeats(s, late, "room", 126.0) == "a-old"
        assert LiveStore.repeats(s, alert("x", "unknown", 2.0, 5.0, 1302.0), "room", 126.0) is None
        # the same connection's later moments do not overlap the old alert on the source clock
        assert LiveStore.repeats(s, alert("x", "rejoin", 9.0, 10.0, 1309.0), "room", 126.0) is None


def test_stopping_and_starting_again_opens_and_closes_a_gap(db: Database) -> None:
    from store.models import BroadcastGap

    with db.session() as s, s.begin():
        LiveStore.end_broadcast(s, "new", 1060.0, 29.0, "stalled")
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s,
            broadcast_id="next",
            stream_id="room",
            url="u",
            name="",
            folder="/x",
            started_ts=1075.0,
            source_start_s=None,
            rules_version="v",
        )
    with db.session() as s:
        gap = s.query(BroadcastGap).one()
        assert (gap.start_ts, gap.end_ts, gap.reason) == (1060.0, 1075.0, "stalled")


def test_transcript_watermark_moves_file_statuses(db: Database) -> None:
    with db.session() as s, s.begin():
        for i in range(3):
            LiveStore.add_segment(s, "new", i, f"/x/seg_{i}.ts", i * 2.0, 2.0, 10, 0.0)
        LiveStore.add_segment(s, "new", 0, "/x/seg_0.ts", 0.0, 2.0, 10, 0.0)  # idempotent
    u = Utterance(0, 0.5, 1.5, "你好", (Word("你", 0.5, 1.0), Word("好", 1.0, 1.5)))
    with db.session() as s, s.begin():
        LiveStore.store_transcript(s, "new", [u], done_s=4.0, final=False)
    with db.session() as s, s.begin():
        LiveStore.mark_analyzed(s, "new", [0], analyzed_s=2.0, final=False)
    with db.session() as s:
        assert [r.status for r in s.query(MediaSegmentRow).order_by(MediaSegmentRow.seq)] == [
            "analyzed",
            "transcribed",
            "recorded",
        ]
        assert s.query(UtteranceRow).one().analyzed
        assert s.get(Broadcast, "new").asr_done_s == 4.0


def test_a_caption_read_again_after_a_restart_is_stored_once(db: Database) -> None:
    def caption(i: int, t: float, text: str = "全网最低价限时秒杀") -> Utterance:
        return Utterance(i, t, t + 4.0, text, source="screen")

    with db.session() as s, s.begin():
        LiveStore.store_captions(s, "new", [caption(0, 8.544)], done_s=10.0, final=False)
    # the restarted reader met its first frame one sample earlier; the same text 6 s on is a new showing
    with db.session() as s, s.begin():
        LiveStore.store_captions(
            s, "new", [caption(1, 8.144), caption(2, 14.5), caption(3, 8.2, "另一条")], done_s=20.0, final=False
        )
    with db.session() as s:
        rows = s.query(UtteranceRow).filter(UtteranceRow.source == "screen").order_by(UtteranceRow.start_s).all()
        assert [(r.text, r.start_s) for r in rows] == [
            ("另一条", 8.2),
            ("全网最低价限时秒杀", 8.544),
            ("全网最低价限时秒杀", 14.5),
        ]


def test_an_alert_grows_until_its_evidence_is_cut(db: Database) -> None:
    grown = alert("a-old", "old", 28.0, 34.0, 1028.0)
    with db.session() as s, s.begin():
        assert LiveStore.upsert_alert(s, grown, {"text": "grown"}, "room") is False
    with db.session() as s, s.begin():
        assert s.get(AlertRow, "a-old").end_s == 34.0
        s.get(AlertRow, "a-old").evidence_status = "done"
    with db.session() as s, s.begin():
        LiveStore.upsert_alert(s, alert("a-old", "old", 28.0, 40.0, 1028.0), {}, "room")
    with db.session() as s:
        assert s.get(AlertRow, "a-old").end_s == 34.0  # closed alerts are not rewritten


def test_writer_runs_jobs_in_order_and_reports_errors_to_callers(db: Database) -> None:
    w = DbWriter(db)
    w.start()
    seen: list[int] = []
    done = threading.Event()
    for i in range(20):
        w.submit(lambda s, i=i: i, then=seen.append)
    w.submit(lambda s: None, then=lambda _r: done.set())
    assert done.wait(10)
    assert seen == list(range(20))
    with pytest.raises(KeyError):
        w.call(lambda s: LiveStore.end_broadcast(s, "missing", 0.0, 0.0, ""))
    assert w.call(lambda s: 42) == 42
    w.stop()
