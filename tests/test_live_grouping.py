"""Live alert grouping (alerts/live.py) gives the same alerts as a scan's `group_detections`."""

from __future__ import annotations

import random

from alerts.grouping import alert_id_for, group_detections
from alerts.live import LiveGrouper
from detectors.types import Detection

CATS = ("false_claim", "price_fraud", "vulgar")


def det(cat: str, start: float, end: float, source: str = "speech", rule: str = "r") -> Detection:
    return Detection(
        rule_id=rule,
        category=cat,
        code="A1",
        severity="high",
        law="",
        source=source,
        start_s=start,
        end_s=end,
        matched="x",
        text=f"{cat} {start}",
    )


def utterance_stream(seed: int) -> list[list[Detection]]:
    """Detections as an analysis worker sees them: utterance by utterance, in time order."""
    rnd = random.Random(seed)
    t = 0.0
    out = []
    for _ in range(40):
        t += rnd.uniform(0.2, 4.0)
        length = rnd.uniform(1.0, 4.0)
        hits = [
            det(rnd.choice(CATS), t + rnd.uniform(0, 0.5), t + length, rnd.choice(("speech", "screen")))
            for _ in range(rnd.randint(0, 3))
        ]
        out.append(hits)
        t += length
    return out


def test_incremental_groups_equal_the_scan_groups() -> None:
    for seed in range(20):
        batches = utterance_stream(seed)
        g = LiveGrouper(merge_gap_s=1.0)
        final: dict[str, tuple[Detection, ...]] = {}
        for batch in batches:
            for ch in g.add("b1", batch):
                final[ch.alert_id] = ch.detections
        scan = group_detections([d for b in batches for d in b], 1.0)
        expected = {
            alert_id_for("b1", grp[0].category, grp[0].source, min(d.start_s for d in grp)): sorted(
                (d.start_s, d.end_s) for d in grp
            )
            for grp in scan
        }
        got = {k: sorted((d.start_s, d.end_s) for d in v) for k, v in final.items()}
        assert got == expected, seed


def test_first_detection_raises_later_ones_update_the_same_alert() -> None:
    g = LiveGrouper(merge_gap_s=1.0)
    (first,) = g.add("b1", [det("false_claim", 10.0, 12.0)])
    assert first.new
    (second,) = g.add("b1", [det("false_claim", 12.5, 14.0)])
    assert not second.new and second.alert_id == first.alert_id and len(second.detections) == 2
    (third,) = g.add("b1", [det("false_claim", 20.0, 21.0)])
    assert third.new and third.alert_id != first.alert_id


def test_a_group_closes_once_the_transcript_is_complete_past_its_end_and_gap() -> None:
    g = LiveGrouper(merge_gap_s=1.0)
    (ch,) = g.add("b1", [det("vulgar", 10.0, 12.0)])
    assert g.close_before("b1", 12.9) == []
    assert g.close_before("b1", 13.1) == [ch.alert_id]
    assert g.open_alerts("b1") == []


def test_restored_groups_keep_growing_after_a_restart() -> None:
    g = LiveGrouper(merge_gap_s=1.0)
    g.restore("stored-id", "b1", [det("price_fraud", 5.0, 7.0)])
    (ch,) = g.add("b1", [det("price_fraud", 7.5, 9.0)])
    assert ch.alert_id == "stored-id" and not ch.new
    assert g.close_broadcast("b1") == ["stored-id"]


def test_broadcasts_never_share_groups() -> None:
    g = LiveGrouper(merge_gap_s=1.0)
    a = g.add("b1", [det("vulgar", 1.0, 2.0)])
    b = g.add("b2", [det("vulgar", 1.0, 2.0)])
    assert a[0].new and b[0].new and a[0].alert_id != b[0].alert_id


def test_a_group_followed_by_a_new_one_of_its_kind_is_closed_too() -> None:
    g = LiveGrouper(merge_gap_s=1.0)
    (a,) = g.add("b1", [det("false_claim", 10.0, 12.0)])
    (b,) = g.add("b1", [det("false_claim", 20.0, 21.0)])  # before the watermark passed 13 s
    assert b.new and b.alert_id != a.alert_id
    assert g.close_before("b1", 14.0) == [a.alert_id]
    assert g.close_broadcast("b1") == [b.alert_id]
