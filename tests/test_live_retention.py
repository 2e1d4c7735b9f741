"""Retention decisions (store/retention.py): pure function over facts, and the database side."""

from __future__ import annotations

import time
from pathlib import Path

from store.db import Database
from store.models import AlertRow, Broadcast, MediaSegmentRow
from store.retention import (
    Protected,
    RetentionConfig,
    RetentionPolicy,
    SegmentFacts,
    apply_retention,
    plan_retention,
)

NOW = 1_000_000.0
H = 3600.0


def seg(
    i: int,
    age_h: float,
    *,
    size: int = 100,
    status: str = "analyzed",
    pinned: bool = False,
    stream: str = "s1",
    broadcast: str = "b1",
) -> SegmentFacts:
    return SegmentFacts(i, stream, broadcast, i * 2.0, i * 2.0 + 2.0, NOW - age_h * H, size, status, pinned)


def test_old_recordings_go_pinned_and_unprocessed_ones_stay() -> None:
    segs = [seg(1, 80), seg(2, 80, pinned=True), seg(3, 80, status="transcribed"), seg(4, 10)]
    plan = plan_retention(segs, {"s1": RetentionPolicy(max_age_s=72 * H)}, NOW)
    assert [(d.segment_id, d.reason) for d in plan] == [(1, "age")]


def test_quota_deletes_oldest_first_until_under_the_limit() -> None:
    segs = [seg(i, 10 - i) for i in range(1, 6)]  # 500 bytes, seg 1 oldest
    plan = plan_retention(segs, {"s1": RetentionPolicy(max_bytes=250)}, NOW)
    assert [d.segment_id for d in plan] == [1, 2, 3]
    assert {d.reason for d in plan} == {"stream quota"}


def test_pinned_files_count_against_the_quota_but_are_never_deleted() -> None:
    segs = [seg(1, 5, pinned=True, size=400), seg(2, 4), seg(3, 3)]
    plan = plan_retention(segs, {"s1": RetentionPolicy(max_bytes=300)}, NOW)
    assert [d.segment_id for d in plan] == [2, 3]  # still over: nothing else may go


def test_disk_quota_spans_streams() -> None:
    segs = [seg(1, 9, stream="a"), seg(2, 8, stream="b"), seg(3, 7, stream="a")]
    plan = plan_retention(segs, {}, NOW, total_max_bytes=150)
    assert [(d.segment_id, d.reason) for d in plan] == [(1, "disk quota"), (2, "disk quota")]


def test_files_a_pending_alert_needs_are_protected() -> None:
    segs = [seg(i, 100) for i in range(1, 6)]  # [2,4) [4,6) [6,8) [8,10) [10,12)
    plan = plan_retention(segs, {"s1": RetentionPolicy(max_age_s=H)}, NOW, [Protected("b1", 5.0, 7.0)])
    assert [d.segment_id for d in plan] == [1, 4, 5]


def test_same_facts_same_answer() -> None:
    segs = [seg(i, 100 - i, size=i * 10) for i in range(1, 30)]
    pol = {"s1": RetentionPolicy(max_age_s=90 * H, max_bytes=1000)}
    assert plan_retention(segs, pol, NOW) == plan_retention(list(reversed(segs)), pol, NOW)


def test_config_converts_hours_and_gib() -> None:
    assert RetentionConfig(max_age_h=2, max_gb=1).policy() == RetentionPolicy(7200.0, 1024**3)
    assert RetentionConfig(max_age_h=None).policy().max_age_s is None


def test_apply_deletes_files_marks_rows_and_never_touches_evidence(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rec = tmp_path / "rec"
    rec.mkdir()
    evidence = tmp_path / "evidence" / "a1"
    evidence.mkdir(parents=True)
    (evidence / "clip.mp4").write_bytes(b"clip")
    old = time.time() - 100 * H
    with db.session() as s, s.begin():
        s.add(Broadcast(id="b1", stream_id="s1", kind="live", source="x", created_ts=old, status="ended"))
        s.flush()
        for i in range(4):
            p = rec / f"seg_{i:06d}.ts"
            p.write_bytes(b"x" * 10)
            s.add(
                MediaSegmentRow(
                    broadcast_id="b1",
                    seq=i,
                    path=str(p),
                    start_s=i * 2.0,
                    duration_s=2.0,
                    status="analyzed",
                    pinned=(i == 0),
                    size=10,
                    created_ts=old,
                )
            )
        s.add(
            AlertRow(
                id="a1",
                broadcast_id="b1",
                stream_id="s1",
                category="vulgar",
                code="C1",
                rule_id="r",
                severity="high",
                source="speech",
                start_s=6.5,
                end_s=7.0,
                text="t",
                rules_version="v",
                evidence_status="pending",
                created_ts=old,
            )
        )
    done = apply_retention(
        db, {"s1": RetentionPolicy(max_age_s=H)}, time.time(), pre_roll_s=0.0, post_roll_s=0.0
    )
    assert [d.segment_id for d in done] == [2, 3]  # seq 1, 2: seq 0 pinned, seq 3 holds the pending alert
    assert sorted(p.name for p in rec.iterdir()) == ["seg_000000.ts", "seg_000003.ts"]
    with db.session() as s:
        assert [r.deleted for r in s.query(MediaSegmentRow).order_by(MediaSegmentRow.seq)] == [
            False,
            True,
            True,
            False,
        ]
    assert (evidence / "clip.mp4").read_bytes() == b"clip"
