"""Two-character terms are not read across a word boundary (characters inside other words)."""

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
    terms: [保本, 内定, 特供]
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
    "text",
    ["环保本身很重要", "站内定购的名额", "今天特供酒给大家", "这个抽奖是内定的吗abc12内定", "只要一百九十九元只要求好评"],
)
def test_straddle_check_agrees_with_the_full_segmentation(text: str) -> None:
    from detectors.engine import _WordBounds

    b = word_bounds(text)
    for s in range(len(text) - 1):
        expected = (s + 1) in b and (s + 2) not in b
        assert _WordBounds(text).straddles(s, s + 2) == expected, (text, s)
