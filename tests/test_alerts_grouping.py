from __future__ import annotations

from alerts.grouping import alert_id_for, context_text, group_detections, make_alert
from asr.types import Utterance
from detectors.types import Detection


def det(
    rule: str,
    cat: str,
    start: float,
    end: float,
    sev: str = "medium",
    source: str = "speech",
    score: float = 100.0,
) -> Detection:
    return Detection(
        rule_id=rule,
        category=cat,
        code="A1",
        severity=sev,
        law="广告法 第9条",
        source=source,
        start_s=start,
        end_s=end,
        matched="最",
        text=f"text {start}",
        score=score,
    )


def test_overlapping_hits_of_one_category_are_one_alert() -> None:
    groups = group_detections([det("a", "false_claim", 1.0, 2.0), det("b", "false_claim", 1.5, 2.5)], 1.0)
    assert len(groups) == 1
    assert {d.rule_id for d in groups[0]} == {"a", "b"}


def test_hits_apart_in_time_are_separate_alerts() -> None:
    groups = group_detections([det("a", "false_claim", 1.0, 2.0), det("a", "false_claim", 5.0, 6.0)], 1.0)
    assert [len(g) for g in groups] == [1, 1]


def test_categories_and_sources_never_merge() -> None:
    groups = group_detections(
        [
            det("a", "false_claim", 1.0, 2.0),
            det("b", "fake_sales", 1.0, 2.0),
            det("c", "false_claim", 1.0, 2.0, source="screen"),
        ],
        1.0,
    )
    assert len(groups) == 3


def test_lead_detection_is_most_severe_and_id_is_deterministic() -> None:
    g = [det("low", "false_claim", 1.0, 2.0, sev="low"), det("high", "false_claim", 1.2, 3.0, sev="high")]
    a = make_alert(g, broadcast_id="b1", rules_version="v1", context="ctx", started_ts=1000.0)
    assert a.rule_id == "high" and a.severity == "high"
    assert (a.start_s, a.end_s) == (1.0, 3.0)
    assert a.start_ts == 1001.0
    assert a.alert_id == alert_id_for("b1", "false_claim", "speech", 1.0)
    assert a.alert_id != alert_id_for("b2", "false_claim", "speech", 1.0)
    again = make_alert(list(reversed(g)), broadcast_id="b1", rules_version="v1", context="ctx")
    assert again.alert_id == a.alert_id


def test_context_takes_utterances_around_the_moment() -> None:
    utts = [Utterance(i, float(i * 5), float(i * 5 + 4), f"u{i}") for i in range(10)]
    ctx = context_text(utts, 20.0, 21.0, before_s=5.5, after_s=3.0)
    assert ctx == "u3 u4"


def test_hits_of_one_category_in_one_utterance_are_one_alert() -> None:
    a = det("a", "false_claim", 1.0, 1.5)
    b = det("b", "false_claim", 4.0, 4.5)
    from dataclasses import replace

    groups = group_detections([replace(a, utterance_index=3), replace(b, utterance_index=3)], 1.0)
    assert len(groups) == 1
    groups = group_detections([replace(a, utterance_index=3), replace(b, utterance_index=4)], 1.0)
    assert len(groups) == 2
