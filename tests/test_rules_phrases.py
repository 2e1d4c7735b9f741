"""The shipped rule packs: every phrase table, the DOMAIN keyword traps, and the corpus (clean text,
and real ASR transcripts of the demo broadcasts with their homophones and traditional script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.config import DEFAULT_RULES_DIR
from detectors.engine import RuleSet
from detectors.evaluate import evaluate_items, evaluate_transcript, load_labelled, load_transcript
from detectors.rules import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
DATA = ROOT / "tests" / "data"

RULES = RuleSet.load([DEFAULT_RULES_DIR])

# DOMAIN.md's keyword traps: ordinary speech that must not alert.
DOMAIN_TRAPS = [
    "第一波福利",
    "第一排的朋友",
    "最后再说一遍",
    "最近很多人问",
    "比我们上一代更轻",
    "最好放冰箱冷藏",
    "我们争取做到最好",
    "本品不具有疾病治疗功能",
    "这不是药品",
    "快到期的单独标出来了",
    "外箱有磨损介意慎拍",
    "鲜活易腐商品不适用七天无理由",
    "性能很稳定",
    "最高档位",
]

PHRASES = [
    pytest.param(r.id, kind, phrase, id=f"{r.id}-{kind}-{i}")
    for r in RULES.rules
    for kind, phrases in (("flag", r.should_flag), ("quiet", r.should_not_flag))
    for i, phrase in enumerate(phrases)
]


@pytest.mark.parametrize(("rule_id", "kind", "phrase"), PHRASES)
def test_phrase_table(rule_id: str, kind: str, phrase: str) -> None:
    hits, silenced, _ = RULES.match(phrase)
    fired = [h for h in hits if h.rule_id == rule_id]
    if kind == "flag":
        why = [h.reason for h in silenced if h.rule_id == rule_id]
        assert fired, f"{rule_id} should flag {phrase!r} (silenced: {why})"
    else:
        assert not fired, (
            f"{rule_id} should not flag {phrase!r}: {[(h.matched, h.mode, h.score) for h in fired]}"
        )


@pytest.mark.parametrize("phrase", [c.text for c in RULES.clean])
def test_pack_clean_lines_raise_nothing(phrase: str) -> None:
    hits, _, _ = RULES.match(phrase)
    assert hits == [], [(h.rule_id, h.matched) for h in hits]


@pytest.mark.parametrize("trap", DOMAIN_TRAPS)
def test_domain_traps_stay_quiet_and_are_in_the_tables(trap: str) -> None:
    hits, _, _ = RULES.match(trap)
    assert hits == [], [(h.rule_id, h.matched) for h in hits]
    tables = [c.text for c in RULES.clean] + [p for r in RULES.rules for p in r.should_not_flag]
    assert any(trap in p for p in tables), f"no phrase table carries the trap {trap!r}"


def test_every_category_has_rules_with_code_law_and_phrases() -> None:
    assert {r.category for r in RULES.rules} == set(CATEGORIES)
    for r in RULES.rules:
        assert r.law and r.code and r.severity in ("low", "medium", "high", "critical"), r.id
        assert r.should_flag and r.should_not_flag, r.id
    core = [r for r in RULES.rules if r.category in ("false_claim", "price_fraud", "fake_sales", "vulgar")]
    assert len(core) >= 20
    assert {r.code for r in RULES.rules if r.category == "false_claim"} >= {"A1", "A2", "A3", "A4", "A7"}
    assert {r.code for r in RULES.rules if r.category == "price_fraud"} >= {"B1", "B2", "B3"}


def test_rule_ids_are_unique_and_name_their_category() -> None:
    ids = [r.id for r in RULES.rules]
    assert len(ids) == len(set(ids))
    for r in RULES.rules:
        assert r.id.startswith(r.category + "."), r.id


def test_clips_get_exactly_their_labelled_categories() -> None:
    for item in load_labelled(CORPUS / "clips.jsonl"):
        hits, _, _ = RULES.match(item.text)
        got = {RULES.rule(h.rule_id).category for h in hits}
        assert got == set(item.labels), (item.ref, item.text, sorted(got), sorted(item.labels))


@pytest.mark.parametrize("name", ["broadcast_0.json", "broadcast_1.json"])
def test_broadcast_span_texts(name: str) -> None:
    rep = evaluate_items(RULES, load_labelled(CORPUS / name))
    assert rep.recall >= 0.95 and rep.precision >= 0.95, (rep.misses, rep.false_alarms)


def test_extra_lines_beyond_the_corpus() -> None:
    rep = evaluate_items(RULES, load_labelled(DATA / "rules_extra_lines.jsonl"))
    assert rep.recall >= 0.95 and rep.precision >= 0.95, (rep.misses, rep.false_alarms)


@pytest.mark.parametrize("n", [0, 1])
def test_real_asr_transcripts_keep_recall_and_precision(n: int) -> None:
    """Whisper base's own output (源价, 護存只剩時間, 包製擺必 ...): scored by time against the spans."""
    utts = load_transcript(DATA / f"asr_broadcast_{n}.json")
    assert any(ch in u.text for u in utts for ch in "們價這"), "the fixture should be Whisper's raw script"
    rep = evaluate_transcript(RULES, utts, CORPUS / f"broadcast_{n}.json")
    assert rep.recall >= 0.95, rep.misses
    assert rep.precision >= 0.95, rep.false_alarms


def test_transcript_alerts_score_with_the_projects_scorer(tmp_path: Path) -> None:
    """The alerts JSON lines we write are what tools/score.py reads; it agrees on the figures."""
    utts = load_transcript(DATA / "asr_broadcast_0.json")
    rep = evaluate_transcript(RULES, utts, CORPUS / "broadcast_0.json")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in rep.alerts), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "score.py"), str(CORPUS / "broadcast_0.json"), str(alerts)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    last = out.strip().splitlines()[-1]
    recall, precision = (float(x.split("=")[1]) for x in last.split())
    assert recall >= 0.95 and precision >= 0.95, out
    assert abs(recall - rep.recall) < 1e-3 and abs(precision - rep.precision) < 1e-3, out


def test_every_should_flag_line_survives_traditional_script_and_full_width() -> None:
    """Whisper writes either script at random; hosts' captions use full-width characters."""
    import opencc

    s2t = opencc.OpenCC("s2t")
    wide = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
    for r in RULES.rules:
        for phrase in r.should_flag:
            for variant in (s2t.convert(phrase), phrase.translate(wide), " ".join(phrase)):
                hits, _, _ = RULES.match(variant)
                assert any(h.rule_id == r.id for h in hits), (r.id, variant)


def test_asr_detections_are_timed_to_their_words() -> None:
    utts = load_transcript(DATA / "asr_broadcast_0.json")
    narrower = 0
    for u in utts:
        for d in RULES.detect(u):
            assert u.start_s - 0.01 <= d.start_s < d.end_s <= u.end_s + 0.01, (d.matched, u.text)
            assert d.matched in u.text
            if d.end_s - d.start_s < 0.8 * (u.end_s - u.start_s):
                narrower += 1
    assert narrower >= 10
