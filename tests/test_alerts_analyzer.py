"""One analyzer for scan, replay and live (alerts/analyzer.py): the same alerts and ids however the
transcript is cut into pieces, and one alert per line per category."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.analyzer import BroadcastAnalyzer, analyze_all
from alerts.config import AlertsConfig
from alerts.grouping import group_alert_id, group_detections
from alerts.types import Alert
from alerts.worker import AnalysisResult, AnalysisWorker
from asr.types import TranscriptBatch, Utterance, Word
from detectors.price import PriceChecker
from detectors.types import Detection, PriceClaim, RuleSet

CATS = ("false_claim", "price_fraud", "vulgar")
SEVS = ("low", "medium", "high")


@dataclass
class FakeRules:
    """Detections written into the line: each token 'cat:sev' is a hit on the word that holds it."""

    version: str = "v1"

    def detect(self, utt: Utterance) -> list[Detection]:
        out = []
        for i, w in enumerate(utt.words):
            if ":" not in w.text:
                continue
            cat, sev = w.text.split(":")
            out.append(
                Detection(
                    rule_id=f"{cat}.{sev}.{i % 2}",
                    category=cat,
                    code="A1",
                    severity=sev,
                    law="",
                    source=utt.source,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    matched=w.text,
                    text=utt.text,
                    score=50.0 + i,
                    utterance_index=utt.index,
                )
            )
        return out


def make_utterances(spec: Sequence[tuple[float, float, Sequence[str]]]) -> list[Utterance]:
    """(pause before, word length, words) per line: lines in order, never overlapping."""
    t = 0.0
    utts = []
    for i, (pause, length, words) in enumerate(spec):
        t += pause
        ws = []
        for text in words:
            ws.append(Word(text, t, t + length))
            t += length
        utts.append(Utterance(i, ws[0].start_s, ws[-1].end_s, "".join(words), tuple(ws)))
    return utts


word = st.one_of(st.sampled_from(["啊", "这个", "好"]), st.builds(lambda c, s: f"{c}:{s}", st.sampled_from(CATS),
                                                              st.sampled_from(SEVS)))
line = st.tuples(st.floats(0.0, 4.0), st.floats(0.1, 2.0), st.lists(word, min_size=1, max_size=6))


def live_alerts(analyzer: BroadcastAnalyzer, utts: list[Utterance], cuts: list[int], rules: RuleSet) -> dict[
        str, Alert]:
    """Feed in pieces, each with the watermark it completes; the last version of every alert."""
    seen: dict[str, Alert] = {}
    closed: set[str] = set()
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(utts))), len(utts)]
    for lo, hi in itertools.pairwise(bounds):
        done = utts[hi].start_s if hi < len(utts) else utts[-1].end_s
        step = analyzer.feed(utts[lo:hi], done, rules=rules, final=hi == len(utts))
        for a in step.alerts:
            assert a.alert_id not in closed, "a closed alert grew"
            seen[a.alert_id] = a
        for a in step.closed:
            closed.add(a.alert_id)
            seen[a.alert_id] = a
    for a in analyzer.close():
        seen[a.alert_id] = a
    return seen


@settings(max_examples=150, deadline=None)
@given(
    spec=st.lists(line, min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 25), max_size=10),
    gap=st.sampled_from([0.0, 1.0, 3.0]),
    after=st.sampled_from([0.0, 5.0]),
)
def test_live_in_any_chunking_equals_the_scan(
    spec: list[tuple[float, float, list[str]]], cuts: list[int], gap: float, after: float
) -> None:
    cfg = AlertsConfig(merge_gap_s=gap, context_after_s=after, context_before_s=4.0)
    utts = make_utterances(spec)
    rules = FakeRules()
    _, scan = analyze_all(utts, rules=rules, cfg=cfg, broadcast_id="b1", started_ts=1000.0)
    live = live_alerts(BroadcastAnalyzer("b1", cfg, started_ts=1000.0), utts, cuts, rules)
    assert sorted(live) == sorted(a.alert_id for a in scan)
    for a in scan:
        assert live[a.alert_id] == a
    # the analyzer groups as the batch rule does, and names alerts by the one id rule
    dets = [d for u in utts for d in rules.detect(u)]
    groups = group_detections(dets, gap)
    assert sorted(group_alert_id(g, "b1") for g in groups) == sorted(a.alert_id for a in scan)


def test_first_detection_raises_later_ones_grow_the_same_alert_until_closed() -> None:
    cfg = AlertsConfig(merge_gap_s=1.0, context_after_s=0.0)
    an = BroadcastAnalyzer("b1", cfg)
    rules = FakeRules()
    u0, u1, u2 = make_utterances([(10.0, 1.0, ["vulgar:low", "啊"]), (0.0, 1.0, ["vulgar:high"]),
                                  (5.0, 1.0, ["vulgar:low"])])
    (first,) = an.feed([u0], u0.end_s, rules=rules).alerts
    step = an.feed([u1], u1.end_s, rules=rules)
    assert [a.alert_id for a in step.alerts] == [first.alert_id] and step.alerts[0].severity == "high"
    assert not step.closed
    step = an.feed([u2], u2.end_s, rules=rules)
    assert [a.alert_id for a in step.closed] == [first.alert_id]  # nothing can join it any more
    assert step.alerts[0].alert_id != first.alert_id
    assert [a.alert_id for a in an.close()] == [step.alerts[0].alert_id]


def test_restored_groups_keep_their_id_and_keep_growing_after_a_restart() -> None:
    cfg = AlertsConfig(merge_gap_s=1.0, context_after_s=0.0)
    rules = FakeRules()
    u0, u1 = make_utterances([(5.0, 1.0, ["price_fraud:low"]), (0.5, 1.0, ["price_fraud:high"])])
    before = BroadcastAnalyzer("b1", cfg)
    (stored,) = before.feed([u0], u0.end_s, rules=rules).alerts
    after = BroadcastAnalyzer("b1", cfg)
    after.restore(stored)
    (grown,) = after.feed([u1], u1.end_s, rules=rules).alerts
    assert grown.alert_id == stored.alert_id and len(grown.detections) == 2
    assert [a.alert_id for a in after.close()] == [stored.alert_id]


# -- the one line that raised two alerts of one category in live ------------------------------------------

LINE = "这款面膜史上最强效果真的好到爆没有之一"


def line_utterance(index: int = 7, t0: float = 10.0) -> Utterance:
    words = tuple(Word(ch, t0 + i * 0.3, t0 + (i + 1) * 0.3) for i, ch in enumerate(LINE))
    return Utterance(index, t0, t0 + len(LINE) * 0.3, LINE, words)


@dataclass
class FakePort:
    rule_set: RuleSet
    results: list[AnalysisResult] = field(default_factory=list)

    def rules(self, stream_id: str) -> RuleSet:
        return self.rule_set

    def clocks(self, broadcast_id: str) -> tuple[float | None, float | None]:
        return 1000.0, None

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]:
        return []

    def deliver(self, result: AnalysisResult) -> None:
        self.results.append(result)


def test_superlative_and_no_other_on_one_line_are_one_alert_live_and_in_a_scan() -> None:
    from app.config import RootConfig
    from detectors.engine import RuleSet as Engine

    rules = Engine.load(RootConfig().rule_dirs())
    utt = line_utterance()
    dets = rules.detect(utt)
    # the shipped packs hit this line more than once in one category, further apart than the merge gap
    hits = sorted((d for d in dets if d.category == "false_claim"), key=lambda d: d.start_s)
    assert len({d.severity for d in hits}) > 1
    assert any(b.start_s > a.end_s + AlertsConfig().merge_gap_s for a, b in itertools.pairwise(hits))

    port = FakePort(rules)
    worker = AnalysisWorker(AlertsConfig(), port, PriceChecker())
    worker.analyze(TranscriptBatch("b1", "room", (utt,), utt.end_s, False))
    later = Utterance(8, utt.end_s + 30.0, utt.end_s + 31.0, "谢谢大家")
    worker.analyze(TranscriptBatch("b1", "room", (later,), math.inf, True))
    live: dict[str, Alert] = {}
    for r in port.results:
        live.update({a.alert_id: a for a in r.alerts})
    false_claims = [a for a in live.values() if a.category == "false_claim"]
    assert len(false_claims) == 1
    assert false_claims[0].severity == "high"
    assert {d.rule_id for d in false_claims[0].detections} == {d.rule_id for d in hits}
    assert sum(r.closed.count(false_claims[0].alert_id) for r in port.results) == 1

    # the scan of the same transcript names it the same: reviewers' decisions line up in replay
    _, scan = analyze_all([utt, later], rules=rules, cfg=AlertsConfig(), broadcast_id="b1", started_ts=1000.0)
    assert [a.alert_id for a in scan if a.category == "false_claim"] == [false_claims[0].alert_id]
