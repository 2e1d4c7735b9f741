"""Lexicon references in rule packs: @lexicon.group terms and {@lexicon.group} in regexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.engine import RuleSet
from detectors.rules import RulePackError, collect_errors

LEX = """\
lexicon: demo
sources: {s1: {url: "https://example.org/list", title: demo}}
groups:
  ill: {from: [s1], terms: [高血压, 糖尿病]}
  cure: {from: [s1], terms: [治好, 根治]}
"""

PACK = """\
pack: p
category: false_claim
law: x
rules:
  - id: false_claim.a3.demo
    code: A3
    severity: high
    near: [{a: ["@demo.ill"], b: ["@demo.cure"], within: 8}]
    regex: ["{@demo.ill}.{0,4}(吃|喝)"]
    should_flag: [这个茶能根治高血压, 糖尿病喝它]
    should_not_flag: [今天天气好]
"""


def _tree(tmp: Path, lex: str = LEX, pack: str = PACK) -> Path:
    (tmp / "lexicons").mkdir()
    (tmp / "rules").mkdir()
    (tmp / "lexicons" / "demo.yaml").write_text(lex, encoding="utf-8")
    (tmp / "rules" / "p.yaml").write_text(pack, encoding="utf-8")
    return tmp / "rules"


def test_lexicon_terms_and_regex_expand(tmp_path: Path) -> None:
    rs = RuleSet.load([_tree(tmp_path)])
    assert [h.rule_id for h in rs.match("这个茶能根治高血压")[0]] == ["false_claim.a3.demo"]
    assert rs.match("糖尿病人喝这个")[0]
    assert not rs.match("今天天气好")[0]


def test_lexicon_change_is_a_new_version(tmp_path: Path) -> None:
    rules = _tree(tmp_path)
    v1 = RuleSet.load([rules]).version
    (tmp_path / "lexicons" / "demo.yaml").write_text(
        LEX.replace("糖尿病]", "糖尿病, 痛风]"), encoding="utf-8"
    )
    rs = RuleSet.load([rules])
    assert rs.version != v1
    assert rs.match("痛风吃这个就行")[0]


def test_unknown_group_is_a_located_error(tmp_path: Path) -> None:
    rules = _tree(tmp_path, pack=PACK.replace("@demo.cure", "@demo.nothing"))
    with pytest.raises(RulePackError) as e:
        RuleSet.load([rules])
    assert "p.yaml:8: rules[0].near[0].b[0]" in str(e.value) and "demo.nothing" in str(e.value)
    assert collect_errors([rules])


def test_shipped_lexicons_load() -> None:
    rs = RuleSet.load()
    assert rs.rules


def test_rules_cite_law_ids_resolved_from_the_table(tmp_path: Path) -> None:
    rules = _tree(tmp_path, pack=PACK.replace("law: x", "law: adlaw.17; aucl.9"))
    rs = RuleSet.load([rules])
    law = rs.rule("false_claim.a3.demo").law
    assert "广告法" in law and "第17条" in law and "反不正当竞争法(2025修订) 第9条" in law


def test_unknown_law_id_is_a_located_error(tmp_path: Path) -> None:
    rules = _tree(tmp_path, pack=PACK.replace("law: x", "law: adlaw.999"))
    with pytest.raises(RulePackError) as e:
        RuleSet.load([rules])
    assert "p.yaml:3" in str(e.value) and "adlaw.999" in str(e.value)


DEFAULTS_PACK = """\
pack: p
category: false_claim
law: x
defaults:
  exempt: ["@demo.cure"]
  unless: ["@demo.quote", 典型案例]
rules:
  - id: false_claim.a3.demo
    code: A3
    severity: high
    regex: ["{@demo.ill}.{0,4}(吃|喝)", "能(治好|根治)"]
    unless: [遵医嘱]
    should_flag: [糖尿病喝它]
    should_not_flag: [广告法规定糖尿病喝它不能这么说]
"""

QUOTE_LEX = LEX + "  quote: {from: [s1], terms: [广告法规定]}\n"


def test_pack_defaults_expand_lexicons_and_add_unless_to_every_rule(tmp_path: Path) -> None:
    """defaults.exempt and defaults.unless take @lexicon.group terms; unless adds to the rule's own."""
    rs = RuleSet.load([_tree(tmp_path, lex=QUOTE_LEX, pack=DEFAULTS_PACK)])
    assert rs.match("糖尿病喝它")[0]
    # the pack's unless (a lexicon group and a plain phrase) and the rule's own unless all silence it
    for line in ("广告法规定糖尿病喝它不能这么说", "典型案例糖尿病喝它", "糖尿病喝它请遵医嘱"):
        hits, silenced, _ = rs.match(line)
        assert not hits and [h.rule_id for h in silenced] == ["false_claim.a3.demo"], line
    # defaults.exempt "@demo.cure" expanded to 治好/根治: a hit overlapping them is silenced
    hits, silenced, _ = rs.match("这个茶能根治")
    assert not hits and silenced


def test_pack_defaults_unknown_group_is_a_located_error(tmp_path: Path) -> None:
    rules = _tree(tmp_path, lex=QUOTE_LEX, pack=DEFAULTS_PACK.replace("@demo.quote", "@demo.nothing"))
    with pytest.raises(RulePackError) as e:
        RuleSet.load([rules])
    assert "p.yaml:6: defaults.unless[0]" in str(e.value) and "demo.nothing" in str(e.value)


def test_shipped_packs_ignore_quoted_law_text() -> None:
    """A line quoting the law (广告法 第9/17/25条, 禁止传销条例 第7条) is about the law, not a sale."""
    rs = RuleSet.load()
    for line in (
        "广告不得使用国家级、最高级、最佳等用语",
        "除医疗、药品、医疗器械广告外，禁止其他任何广告涉及疾病治疗功能",
        "不得对未来效果、收益或者与其相关的情况作出保证性承诺，明示或者暗示保本、无风险或者保收益",
    ):
        hits, silenced, _ = rs.match(line, "speech")
        assert not hits and silenced, line
    # a warning on the label does not silence a treatment claim in the same line
    assert rs.match("这个能治湿疹，孕妇不得使用", "speech")[0]
