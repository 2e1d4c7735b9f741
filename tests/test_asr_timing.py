"""Hop stamps of live lines (asr/timing.py): arrivals looked up by a line's end, stamps kept in the store."""

from __future__ import annotations

from pathlib import Path

from asr.timing import ArrivalLog, stamp_lines, with_stamps
from asr.types import Utterance
from store.db import Database
from store.live import LiveStore
from store.models import UtteranceRow


def test_a_line_is_stamped_with_the_arrival_of_the_audio_holding_its_end() -> None:
    log = ArrivalLog(keep=4)
    for i in range(6):  # 0.25 s chunks; the oldest two fall out
        log.add((i + 1) * 0.25, 100.0 + i, 99.5 + i)
    log.add(1.0, 500.0)  # the same audio again (a redelivery): the first arrival counts
    assert log.at(0.8) == (103.0, 102.5)
    assert log.at(1.0) == (103.0, 102.5)  # ends exactly on a chunk's end
    assert log.at(1.6) is None  # not arrived yet
    line = Utterance(3, 0.4, 1.1, "你好", meta={"live": True})
    (got,) = stamp_lines([line], log, decode_start_ts=110.0, decode_end_ts=110.5, committed_ts=110.6)
    assert got.meta == {
        "live": True,
        "audio_ts": 104.0,
        "sent_ts": 103.5,
        "decode_start_ts": 110.0,
        "decode_end_ts": 110.5,
        "committed_ts": 110.6,
    }
    assert line.meta == {"live": True}  # frozen lines: a new one
    (bare,) = stamp_lines([line], None, decode_start_ts=1.0, decode_end_ts=2.0, committed_ts=3.0)
    assert "audio_ts" not in bare.meta and bare.meta["committed_ts"] == 3.0


def _broadcast(tmp_path: Path) -> Database:
    """A store holding one live broadcast "b" of stream "room", started at 1000.0."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id="b", stream_id="room", url="u", name="", folder="/x", started_ts=1000.0,
            source_start_s=None, rules_version="v",
        )  # fmt: skip
    return db


def test_the_analysis_stamps_are_kept_with_the_line_when_it_is_marked_analysed(tmp_path: Path) -> None:
    db = _broadcast(tmp_path)
    with db.session() as s, s.begin():
        LiveStore.store_transcript(s, "b", [Utterance(0, 0.5, 1.5, "你好", meta={"committed_ts": 1003.0})], 2.0, False)
    (line,) = with_stamps([Utterance(0, 0.5, 1.5, "你好")], {"received_ts": 1003.25})
    with db.session() as s, s.begin():
        LiveStore.mark_analyzed(s, "b", [0], 2.0, False, {0: {"received_ts": float(line.meta["received_ts"])}})
    with db.session() as s:
        meta = s.query(UtteranceRow).one().meta
    assert meta["committed_ts"] == 1003.0 and meta["received_ts"] == 1003.25
    assert meta["analyzed_ts"] >= 1003.25


def test_status_shows_the_median_delay_of_a_live_broadcasts_newest_lines(tmp_path: Path) -> None:
    from review.monitor_status import LineDelay, line_delay

    db = _broadcast(tmp_path)
    with db.session() as s, s.begin():
        lines = [
            Utterance(i, i * 3.0, i * 3.0 + 2.0, "你好", meta={"sent_ts": 1000.0 + i, "audio_ts": 1000.1 + i * 1.1,
                                                                "committed_ts": 1003.0 + i})
            for i in range(3)
        ]  # fmt: skip
        LiveStore.store_transcript(s, "b", lines, 10.0, False)
        LiveStore.store_transcript(s, "b", [Utterance(3, 10.0, 11.0, "还没")], 12.0, False)
    with db.session() as s:
        assert line_delay(s, "b") is None  # nothing analysed yet
    with db.session() as s, s.begin():
        LiveStore.mark_analyzed(s, "b", [0, 1, 2], 10.0, False, {0: {}, 1: {}, 2: {}})
    with db.session() as s:
        got = line_delay(s, "b")
    assert isinstance(got, LineDelay) and got.lines == 3
    assert got.bus_s == 0.2 and got.asr_s == 2.8  # medians of 0.1/0.2/0.3 s and 2.9/2.8/2.7 s
    assert got.analysis_s is not None and got.total_s is not None and got.total_s > got.analysis_s
