"""Matching semantics of the rule language, and detections located to the words that were said."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asr.types import Utterance, Word
from detectors.engine import RuleSet

HEAD = """\
pack: t
category: false_claim
law: 广告法 第9条
defaults:
  mode: pinyin
  threshold: 88
rules:
"""


def ruleset(tmp_path: Path, body: str) -> RuleSet:
    (tmp_path / "t.yaml").write_text(HEAD + textwrap.indent(textwrap.dedent(body), "  "), encoding="utf-8")
    return RuleSet.load([tmp_path])


def fired(rs: RuleSet, text: str) -> list[str]:
    hits, _, _ = rs.match(text)
    return [h.matched for h in hits]


def test_near_within_n_characters(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a3.cure
          code: A3
          severity: high
          near:
            - a: [高血压, 糖尿病]
              b: [治疗, 治好]
              within: 4
          should_flag: [能治疗高血压]
          should_not_flag: [高血压]
        """,
    )
    assert fired(rs, "可以治疗高血压") == ["治疗高血压"]
    assert fired(rs, "高血压的朋友吃了能治好") == []  # 6 characters apart
    assert fired(rs, "糖尿病也能治好") == ["糖尿病也能治好"]
    assert fired(rs, "治疗") == []


def test_ordered_near(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a3.grow
          code: A3
          severity: high
          near:
            - a: [能, 可以]
              b: [长高]
              within: 3
              ordered: true
          should_flag: [能让孩子长高]
          should_not_flag: [长高]
        """,
    )
    assert fired(rs, "能让孩子长高") == ["能让孩子长高"]
    assert fired(rs, "长高了就能穿") == []


def test_and_not_exempt_and_negation(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.g1.noreturn
          code: G1
          severity: high
          category: consumer_rights
          terms: [不支持七天无理由]
          require: [[商品, 东西]]
          unless: [鲜活]
          should_flag: [这个商品不支持七天无理由]
          should_not_flag: [鲜活商品不支持七天无理由]
        - id: t.a1.best
          code: A1
          severity: high
          terms: [最好的]
          exempt: [最好的办法]
          negation: {window: 3}
          should_flag: [最好的面霜]
          should_not_flag: [不是最好的]
        """,
    )
    assert fired(rs, "这个商品不支持七天无理由") == ["不支持七天无理由"]
    assert fired(rs, "不支持七天无理由") == []  # require: no 商品/东西
    hits, silenced, _ = rs.match("鲜活商品不支持七天无理由")
    assert hits == [] and silenced[0].reason == "unless: 鲜活"
    assert fired(rs, "这是最好的面霜") == ["最好的"]
    hits, silenced, _ = rs.match("最好的办法是多喝水")
    assert hits == [] and silenced[0].reason == "exempt: 最好的办法"
    hits, silenced, _ = rs.match("不是最好的")
    assert hits == [] and silenced[0].reason.startswith("negation")
    # a negation in the previous clause does not reach across the comma
    assert fired(rs, "不是吧，最好的面霜") == ["最好的"]


def test_modes_exact_pinyin_fuzzy(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a3.exact
          code: A3
          severity: high
          mode: exact
          terms: [包治百病]
          should_flag: [包治百病]
          should_not_flag: [很好]
        - id: t.a3.pinyin
          code: A3
          severity: high
          mode: pinyin
          terms: [药到病除]
          should_flag: [药到病除]
          should_not_flag: [很好]
        - id: t.a3.fuzzy
          code: A3
          severity: high
          mode: fuzzy
          terms: [包治百病]
          should_flag: [包至百必]
          should_not_flag: [很好]
        """,
    )
    hits, _, _ = rs.match("這款保健品包製擺必要到病處")
    by_rule = {h.rule_id: h for h in hits}
    assert "t.a3.exact" not in by_rule
    assert by_rule["t.a3.pinyin"].mode == "pinyin" and by_rule["t.a3.pinyin"].matched == "要到病處"
    assert by_rule["t.a3.fuzzy"].mode == "fuzzy" and 88 <= by_rule["t.a3.fuzzy"].score < 95
    assert by_rule["t.a3.fuzzy"].matched == "包製擺必"
    hits, _, _ = rs.match("包治百病")
    assert {h.mode for h in hits} == {"exact"} and {h.score for h in hits} == {100.0}


def test_threshold_controls_fuzzy(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a3.fuzzy
          code: A3
          severity: high
          mode: fuzzy
          threshold: 93
          terms: [包治百病]
          should_flag: [包治百病]
          should_not_flag: [很好]
        """,
    )
    assert fired(rs, "包至百必") == []  # similarity about 92
    assert fired(rs, "包治百病") == ["包治百病"]


def test_short_terms_are_exact_unless_asked(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.d1.replica
          code: D1
          severity: high
          category: counterfeit
          terms: [精仿, {term: 原价, mode: pinyin}]
          should_flag: [精仿]
          should_not_flag: [精纺]
        """,
    )
    assert fired(rs, "精纺羊毛") == []
    assert fired(rs, "源价三百") == ["源价"]


def test_regex_with_macros_and_latin_word_boundaries(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.b3.stock
          code: B3
          severity: medium
          category: price_fraud
          regex: ["(仅|只)剩{num}单"]
          should_flag: [仅剩三单]
          should_not_flag: [还有很多]
        - id: t.c1.insult
          code: C1
          severity: high
          category: vulgar
          terms: [sb]
          should_flag: [你是sb]
          should_not_flag: [usb]
        """,
    )
    assert fired(rs, "仅剩三单了") == ["仅剩三单"]
    assert fired(rs, "只剩12单") == ["只剩12单"]
    assert fired(rs, "USB接口") == []
    assert fired(rs, "你是SB吗") == ["SB"]


def test_term_numeral_expansion(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a4.slim
          code: A4
          severity: high
          terms: ["瘦{n}斤"]
          should_flag: [瘦十斤]
          should_not_flag: [很瘦]
        """,
    )
    assert fired(rs, "三天瘦十斤") == ["瘦十斤"]
    assert fired(rs, "一个月瘦20斤") == ["瘦20斤"]
    assert fired(rs, "三天受时金") == ["受时金"]


def test_sources_limit_where_a_rule_applies(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a1.best
          code: A1
          severity: high
          sources: [screen]
          terms: [最好的]
          should_flag: [最好的]
          should_not_flag: [很好]
        """,
    )
    assert rs.detect(Utterance(0, 0.0, 1.0, "最好的", source="speech")) == []
    assert len(rs.detect(Utterance(0, 0.0, 1.0, "最好的", source="screen"))) == 1


def test_detection_is_located_to_the_words_said(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a1.lowest
          code: A1
          severity: medium
          terms: [全网最低价]
          should_flag: [全网最低价]
          should_not_flag: [很好]
        """,
    )
    words = (
        Word("家人們", 10.0, 10.6),
        Word("，", 10.6, 10.6),
        Word("這款", 10.6, 11.0),
        Word("是", 11.0, 11.2),
        Word("全網", 11.2, 11.6),
        Word("蕞低價", 11.6, 12.3),
        Word("今天", 12.5, 12.9),
        Word("只要99元", 12.9, 14.0),
    )
    text = "".join(w.text for w in words)
    utt = Utterance(7, 10.0, 14.0, text, words, source="speech")
    (d,) = rs.detect(utt)
    assert (d.start_s, d.end_s) == (11.2, 12.3)
    assert d.matched == "全網蕞低價" and d.text == text
    assert (d.rule_id, d.category, d.code, d.severity, d.law) == (
        "t.a1.lowest",
        "false_claim",
        "A1",
        "medium",
        "广告法 第9条",
    )
    assert d.source == "speech" and d.utterance_index == 7 and d.mode == "exact" and d.score == 100.0
    assert d.details["pattern"] == "全网最低价" and d.details["char_span"] == [
        text.index("全"),
        text.index("今"),
    ]


def test_explain_shows_steps_pinyin_hits_and_silenced(tmp_path: Path) -> None:
    rs = ruleset(
        tmp_path,
        """\
        - id: t.a1.best
          code: A1
          severity: high
          terms: [最好的]
          negation: true
          should_flag: [最好的]
          should_not_flag: [不是最好的]
        """,
    )
    ex = rs.explain("這是蕞好的，不是最好的")
    names = [s[0] for s in ex.steps]
    assert names[0] == "input" and "t2s" in names and "strip punctuation" in names
    assert ex.normalized == "这是最好的不是最好的"
    assert ex.pinyin.startswith("zhe shi zui hao de")
    assert [(h.rule_id, h.matched, h.score) for h in ex.hits] == [("t.a1.best", "蕞好的", 100.0)]
    assert [h.reason for h in ex.exempted] == ["negation: 不是"]
    assert ex.version == rs.version


@pytest.mark.parametrize("n_rules", [50])
def test_rules_not_hit_are_never_evaluated(tmp_path: Path, n_rules: int) -> None:
    body = "".join(
        f"""\
        - id: t.a1.r{i}
          code: A1
          severity: low
          terms: [词{i}号]
          should_flag: [词{i}号]
          should_not_flag: [很好]
        """.rstrip(" ")
        for i in range(n_rules)
    )
    rs = ruleset(tmp_path, body)
    seen: list[int] = []
    orig = rs._evaluate

    def spy(ri, sc, source):  # type: ignore[no-untyped-def]
        seen.append(ri)
        return orig(ri, sc, source)

    rs._evaluate = spy  # type: ignore[method-assign]
    rs.match("这里说了词7号和词42号")
    assert sorted(seen) == [7, 42]


def test_hallucinated_utterances_raise_nothing() -> None:
    from detectors.config import DEFAULT_RULES_DIR

    rs = RuleSet.load([DEFAULT_RULES_DIR])
    text = "全网最低价"
    assert rs.detect(Utterance(0, 0.0, 1.0, text))
    assert rs.detect(Utterance(0, 0.0, 1.0, text, meta={"hallucination": "known phrase"})) == []
