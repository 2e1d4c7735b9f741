"""Replay: stored transcripts through a changed rule set, diffed, with reviewers' decisions beside."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alerts.config import AlertsConfig
from app.analysis import analyze_broadcast
from app.replay import diff_alerts, replay
from asr.types import Utterance, Word
from detectors.config import DEFAULT_RULES_DIR
from detectors.engine import RuleSet
from review.decisions import add_decision
from store import repo
from store.db import Database
from store.models import Broadcast

DATA = Path(__file__).parent / "data"


def _utterances(name: str) -> list[Utterance]:
    """A real Whisper base transcript of a corpus broadcast (traditional script, ASR errors and all)."""
    segs = json.loads((DATA / name).read_text(encoding="utf-8"))["segments"]
    out = []
    for i, s in enumerate(segs):
        words = tuple(Word(w["text"], w["start_s"], w["end_s"], w["probability"]) for w in s["words"])
        out.append(Utterance(i, s["start_s"], s["end_s"], "".join(w.text for w in words), words))
    return out


@pytest.fixture
def stored(tmp_path: Path):
    """A stored scan: broadcast, transcript and the alerts the shipped rules raise on it."""
    db = Database(f"sqlite:///{tmp_path / 'lw.db'}")
    rules = RuleSet.load([DEFAULT_RULES_DIR])
    utts = _utterances("asr_broadcast_1.json")
    cfg = AlertsConfig()
    with db.session() as s, s.begin():
        s.add(Broadcast(id="b1", kind="file", source="/rec/b1.flac", status="done", created_ts=time.time(),
                        rules_version=rules.version))
        s.flush()
        repo.replace_utterances(s, "b1", "speech", utts)
        alerts = analyze_broadcast(utts, [], [], rules=rules, price=None, cfg=cfg, broadcast_id="b1",
                                   stream_id=None, started_ts=None).alerts
        for a in alerts:
            repo.save_alert(s, a, {"alert_id": a.alert_id}, None, None)
    yield db, rules, alerts, tmp_path
    db.dispose()


def test_disabling_one_rule_removes_exactly_its_alerts(stored) -> None:
    db, rules, alerts, tmp = stored
    by_rule: dict[str, list] = {}
    for a in alerts:
        for rid in {d.rule_id for d in a.detections}:
            by_rule.setdefault(rid, []).append(a)
    # a rule that is the only rule behind at least one alert
    target = next(rid for rid, items in sorted(by_rule.items())
                  if any({d.rule_id for d in a.detections} == {rid} for a in items))
    site = tmp / "site"
    site.mkdir()
    (site / "site.yaml").write_text(f"pack: site\noverrides:\n  disable: [{target}]\n", encoding="utf-8")
    expected = {a.alert_id for a in alerts if {d.rule_id for d in a.detections} == {target}}
    with db.session() as s:  # add_decision commits each decision itself
        for aid in expected:
            add_decision(s, aid, "false_positive", reviewer="wang", note="not a claim")
    changed = RuleSet.load([DEFAULT_RULES_DIR, site])
    with db.session() as s:
        summary = replay(s, baseline_rules=rules, new_rules=changed, alerts_cfg=AlertsConfig())
    assert summary.baseline_version != summary.new_version
    assert {r.alert_id for r in summary.rows if r.change == "removed"} == expected
    assert all(r.change == "removed" for r in summary.rows)
    assert all(r.decision == "false_positive" for r in summary.rows)
    assert summary.counts() == {"removed": {"false_positive": len(expected)}}


def test_unchanged_rules_replay_to_no_difference(stored) -> None:
    db, rules, alerts, _ = stored
    with db.session() as s:
        summary = replay(s, baseline_rules=rules, new_rules=RuleSet.load([DEFAULT_RULES_DIR]),
                         alerts_cfg=AlertsConfig())
    assert summary.rows == () and summary.baseline_alerts == summary.new_alerts == len(alerts)


def test_diff_reports_added_and_recategorized() -> None:
    from alerts.grouping import make_alert
    from detectors.types import Detection

    def alert(cat: str, start: float, idx: int):
        d = Detection(rule_id=f"{cat}.r", category=cat, code="X", severity="medium", law="", source="speech",
                      start_s=start, end_s=start + 1, matched="m", text=f"t{idx}", utterance_index=idx)
        return make_alert([d], broadcast_id="b", rules_version="v", context="")

    old = [alert("false_claim", 1.0, 1), alert("vulgar", 10.0, 5)]
    new = [alert("fake_sales", 1.0, 1), alert("vulgar", 10.0, 5), alert("price_fraud", 20.0, 8)]
    rows = diff_alerts(old, new)
    assert [(r.change, r.old_category, r.new_category) for r in rows] == [
        ("category", "false_claim", "fake_sales"), ("added", None, "price_fraud")]
