"""Two-character terms are not read across a word boundary (characters inside other words), except
where the boundary is only the HMM's guess or the term heads a compound that keeps its meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.engine import RuleSet, word_bounds

PACK = """\
pack: p
category: false_claim
law: x
rules:
  - id: false_claim.a7.demo
    code: A7
    severity: high
    mode: exact
    terms: [保本, 内定, 特供, 高仿, 特价, 过期, 开光, 空包, 看片, 都有]
    should_flag: [加盟我们保本保息]
    should_not_flag: [环保本身很重要]
"""


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    d: Path = tmp_path_factory.mktemp("rules")
    (d / "p.yaml").write_text(PACK, encoding="utf-8")
    return RuleSet.load([d])


@pytest.mark.parametrize(
    "text", ["为确保本次活动顺利环保本身很重要", "您可以自由在我们站内定购任何VIP服务"]
)
def test_term_across_a_word_boundary_is_silent(rs: RuleSet, text: str) -> None:
    assert not rs.match(text)[0]


@pytest.mark.parametrize("text", ["加盟我们保本保息", "这个抽奖是内定的", "今天特供酒给大家", "内部特供", "这款酒保本"])
def test_term_as_a_word_or_the_start_of_one_fires(rs: RuleSet, text: str) -> None:
    assert rs.match(text)[0]


def test_word_bounds_cover_the_text() -> None:
    b = word_bounds("环保本身很重要")
    assert 0 in b and 7 in b and 2 in b


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("这块高仿表跟正品一模一样", "高仿"),  # 高|仿表: the HMM's split of characters the dictionary lacks
        ("这个是高仿鞋", "高仿"),
        ("这个特价款不退不换", "特价"),  # 特|价款: heads 特价款 (a classifier-like noun after it)
        ("这批过期货便宜卖", "过期"),  # 过|期货
    ],
)
def test_term_heading_a_compound_fires(rs: RuleSet, text: str, term: str) -> None:
    hits = rs.match(text)[0]
    assert [h.matched for h in hits] == [term], text


@pytest.mark.parametrize(
    "text",
    [
        "高仿真绿植摆在客厅",  # 高|仿真: the rest 真 makes another word (an adverb/adjective)
        "开光镜的手机",  # 开|光镜: a verb and its object
        "老人看片子要戴眼镜",  # 看|片子: 子 is the noun suffix of 片
        "这个是空包装盒不要",  # 空|包装盒: more than one character after the term
        "您可以自由在我们站内定购任何VIP服务",  # 站|内|定购: 购 is a verb
        "环保本身很重要",  # 环保|本身: the term's first character ends another word
        "这个方法每个人都有效",  # 都|有效: the word is an adjective, not a noun
    ],
)
def test_term_inside_a_word_that_changes_its_meaning_is_silent(rs: RuleSet, text: str) -> None:
    assert not rs.match(text)[0], text


def test_head_of_compound_needs_a_nominal_rest() -> None:
    from detectors.engine import _WordBounds

    assert not _WordBounds("这个特价款").straddles(2, 4)
    assert _WordBounds("高仿真绿植").straddles(0, 2)
    assert _WordBounds("站内定购").straddles(1, 3)


@pytest.mark.parametrize(
    "text",
    [
        "环保本身很重要",
        "站内定购的名额",
        "今天特供酒给大家",
        "这个抽奖是内定的吗abc12内定",
        "只要一百九十九元只要求好评",
        "这块高仿表跟正品一模一样",
        "开光镜的手机这个特价款",
        "家人们这批过期货",
    ],
)
def test_quick_straddle_check_agrees_with_the_full_segmentation(text: str) -> None:
    """The quick look at the route near the term answers as the full segmentation does."""
    from detectors.engine import _WordBounds

    full = _WordBounds(text)
    full._settle()
    for s in range(len(text) - 1):
        expected = full.words.get(s + 1, 0) > s + 2 and not full._heads_compound(s, s + 2, full.words[s + 1])
        assert _WordBounds(text).straddles(s, s + 2) == expected, (text, s)
        assert full.straddles(s, s + 2) == expected, (text, s)


def test_explain_shows_a_term_read_across_a_word_boundary(rs: RuleSet) -> None:
    ex = rs.explain("环保本身很重要")
    assert not ex.hits
    assert [(h.rule_id, h.pattern, h.reason) for h in ex.exempted] == [
        ("false_claim.a7.demo", "保本", "word boundary: 环保|本身")
    ]
    assert not rs.explain("这个特价款不退不换").exempted
