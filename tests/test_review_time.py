"""The review queue, ledger and statistics show when a moment was *broadcast*, not when it was scanned
(issue 12, part 7). Scan time appears only where the broadcast's clock is unknown, and then labelled."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import ffmpeg
from review.decisions import rule_precision
from review.queries import AlertFilter, ledger_rows, queue, statistics
from store.db import Database
from store.models import AlertRow, Broadcast

SCANNED = datetime(2026, 3, 10, 9, 0, tzinfo=UTC).timestamp()  # when the files were scanned
AIRED = datetime(2024, 5, 1, 2, 0, tzinfo=UTC).timestamp()  # 10:00 in Shanghai: the broadcast's start


def ts(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database.for_data_dir(tmp_path / "data")
    with db.session() as s, s.begin():
        # a file scanned with --started-at or a container time: the broadcast's start is known, the
        # alert row's own start_ts is not (an older scan, or a start learned after the alert was stored)
        s.add(Broadcast(id="b-known", kind="file", source="a.mp4", started_ts=AIRED, created_ts=SCANNED))
        # a file whose broadcast time nobody knows
        s.add(Broadcast(id="b-unknown", kind="file", source="b.mp4", started_ts=None, created_ts=SCANNED))
        s.flush()
        for aid, bid, start_s, start_ts in (
            ("a-known", "b-known", 754.0, None),
            ("a-unknown", "b-unknown", 30.0, None),
            ("a-own", "b-known", 100.0, AIRED + 100.0),
        ):
            s.add(
                AlertRow(
                    id=aid,
                    broadcast_id=bid,
                    stream_id=None,
                    category="false_claim",
                    code="F1",
                    rule_id="r1",
                    severity="high",
                    source="speech",
                    start_s=start_s,
                    end_s=start_s + 3.0,
                    start_ts=start_ts,
                    text="全网最低",
                    rules_version="v1",
                    evidence_status="done",
                    payload={},
                    created_ts=SCANNED + 60.0,
                )
            )
    return db


def test_queue_time_is_the_broadcast_moment_and_scan_time_is_labelled(db: Database) -> None:
    with db.session() as s:
        items = {i["alert_id"]: i for i in queue(s, AlertFilter()).items}
    assert items["a-known"]["time_ts"] == pytest.approx(AIRED + 754.0)  # start + offset, not the scan
    assert items["a-known"]["time_basis"] == "broadcast"
    assert items["a-known"]["scanned_ts"] == pytest.approx(SCANNED + 60.0)
    assert items["a-own"]["time_ts"] == pytest.approx(AIRED + 100.0)
    assert items["a-unknown"]["time_ts"] == pytest.approx(SCANNED + 60.0)
    assert items["a-unknown"]["time_basis"] == "scan"
    with db.session() as s:  # the time range filter uses the broadcast moment too
        aired_day = queue(s, AlertFilter(since_ts=ts("2024-05-01"), until_ts=ts("2024-05-02"))).items
    assert {i["alert_id"] for i in aired_day} == {"a-known", "a-own"}


def test_ledger_and_daily_chart_count_the_broadcast_day(db: Database) -> None:
    with db.session() as s:
        rows = {r.alert_id: r for r in ledger_rows(s, AlertFilter(), "Asia/Shanghai")}
        stats = statistics(s, AlertFilter(), "Asia/Shanghai")
        prec = rule_precision(s, since_ts=ts("2024-05-01"), until_ts=ts("2024-05-02"))
    assert rows["a-known"].time_local == "2024-05-01 10:12:34"
    assert rows["a-known"].time_basis == "broadcast"
    assert rows["a-unknown"].time_local == "2026-03-10 17:01:00" and rows["a-unknown"].time_basis == "scan"
    per_day = {d["day"]: d["alerts"] for d in stats.per_day if d["alerts"]}
    assert per_day == {"2024-05-01": 2, "2026-03-10": 1}
    assert prec["r1"].alerts == 2


def test_alert_page_says_when_it_was_broadcast(db: Database) -> None:
    from review.detail import alert_detail

    with db.session() as s:
        known = alert_detail(s, "a-known")
        unknown = alert_detail(s, "a-unknown")
    assert known is not None and unknown is not None
    assert known["alert"]["start_ts"] == pytest.approx(AIRED + 754.0)
    assert known["alert"]["time_basis"] == "broadcast"
    assert unknown["alert"]["start_ts"] is None and unknown["alert"]["time_basis"] == "scan"


def test_container_creation_time_is_read_and_placeholders_ignored(tmp_path: Path) -> None:
    assert ffmpeg.container_creation_ts({"creation_time": "2024-05-01T02:00:00.000000Z"}) == AIRED
    assert ffmpeg.container_creation_ts({"creation_time": "1970-01-01T00:00:00.000000Z"}) is None
    assert ffmpeg.container_creation_ts({"creation_time": "1904-01-01T00:00:00Z"}) is None
    assert ffmpeg.container_creation_ts({"creation_time": "garbage"}) is None
    assert ffmpeg.container_creation_ts({}) is None
    out = tmp_path / "stamped.mp4"
    subprocess.run(
        [
            ffmpeg.ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-c:a",
            "aac",
            "-metadata",
            "creation_time=2024-05-01T02:00:00Z",
            str(out),
        ],
        check=True,
    )
    assert ffmpeg.probe(out).creation_ts == AIRED
