"""Rule-pack validation (with the offending line), regex safety, layering and the content hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detectors.config import DEFAULT_RULES_DIR
from detectors.engine import RuleSet
from detectors.rules import (
    RulePackError,
    collect_errors,
    regex_problem,
    required_literal_groups,
    required_literals,
)

PACK = """\
pack: test
category: false_claim
law: 广告法 第9条
rules:
  - id: test.a1.best
    code: A1
    severity: high
    terms: [最好的]
    should_flag: [这是最好的]
    should_not_flag: [很好]
"""


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def load_error(tmp_path: Path, text: str) -> RulePackError:
    write(tmp_path, "p.yaml", text)
    with pytest.raises(RulePackError) as ei:
        RuleSet.load([tmp_path])
    return ei.value


def test_valid_pack_loads(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", PACK)
    rs = RuleSet.load([tmp_path])
    assert [r.id for r in rs.rules] == ["test.a1.best"]
    r = rs.rules[0]
    assert (r.category, r.code, r.severity, r.law, r.line) == ("false_claim", "A1", "high", "广告法 第9条", 5)


def test_unknown_field_is_rejected_with_its_line(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("    severity: high\n", "    severity: high\n    colour: red\n"))
    assert (e.line, e.field) == (8, "rules[0].colour")
    assert str(e).startswith(f"{tmp_path / 'p.yaml'}:8: rules[0].colour: ")
    assert "extra" in e.reason.lower() or "not permitted" in e.reason.lower()


def test_bad_severity_names_the_line(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("severity: high", "severity: urgent"))
    assert (e.line, e.field) == (7, "rules[0].severity")


def test_missing_phrase_table_names_the_rule(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("    should_not_flag: [很好]\n", ""))
    assert e.line == 5 and e.field == "rules[0].should_not_flag"


def test_rule_without_patterns_is_rejected(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("    terms: [最好的]\n", ""))
    assert e.line == 5 and "terms, regex, near" in e.reason


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("terms: [最好的]", "terms: [最好的"))
    assert e.field == "yaml" and e.line >= 8


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("    severity: high\n", "    severity: high\n    severity: low\n"))
    assert e.line == 8 and "duplicate" in e.reason


def test_catastrophic_regex_is_rejected_not_run(tmp_path: Path) -> None:
    bad = PACK.replace("    terms: [最好的]\n", '    regex: ["(最+)+好"]\n')
    e = load_error(tmp_path, bad)
    assert (e.line, e.field) == (8, "rules[0].regex[0]") and "backtracking" in e.reason


def test_regex_literals_must_be_normalized(tmp_path: Path) -> None:
    e = load_error(tmp_path, PACK.replace("    terms: [最好的]\n", '    regex: ["最低價"]\n'))
    assert "价" in e.reason and e.line == 8


def test_duplicate_rule_id_across_packs_of_one_layer(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PACK)
    write(tmp_path, "b.yaml", PACK.replace("pack: test", "pack: other"))
    with pytest.raises(RulePackError) as ei:
        RuleSet.load([tmp_path])
    assert ei.value.path.name == "b.yaml" and ei.value.line == 5 and "already defined" in ei.value.reason


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(a+)+b", "nested quantifier"),
        ("(a*)*", "nested quantifier"),
        ("(x|xy|z)*q", "alternation"),
        ("(.|x)*y", "alternation"),
        (r"(a)\1", "backreferences"),
        ("a*", "empty"),
        ("最(", "invalid"),
    ],
)
def test_regex_problems(pattern: str, problem: str) -> None:
    found = regex_problem(pattern)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    "pattern", ["最后{num}单", "(仅|只)剩{num}(件|单)", "好评率(9[5-9]|100)%", "(ab|cd)+e"]
)
def test_safe_regexes_pass(pattern: str) -> None:
    assert regex_problem(pattern) is None


def test_required_literals_trigger_regexes() -> None:
    assert required_literals("最后{num}单") == ["最后"]
    assert sorted(required_literals("(仅|只)剩{num}件") or []) == ["仅剩", "只剩"]
    # adjacent single-character alternations combine into a selective trigger set
    assert sorted(required_literals("(穷|丑)(鬼|狗)们?") or []) == ["丑狗", "丑鬼", "穷狗", "穷鬼"]
    assert required_literals("a(b)?c") == ["a"]
    assert sorted(required_literals("(月销|年销)了?{num}万") or []) == ["年销", "月销"]
    assert sorted(required_literals("[一二三]+[0-9]") or []) == ["一", "三", "二"]
    assert required_literals("[0-9]+[a-z]") is None


def test_required_literal_groups_are_a_conjunction() -> None:
    groups = required_literal_groups("每({num})?(秒|分钟)就?(卖出|售出)")
    assert [sorted(g) for g in groups] == [["每"], ["分钟", "秒"], ["卖出", "售出"]]
    # the set required_literals picks is always one of them
    for pattern in ["最后{num}单", "(仅|只)剩{num}件", "(穷|丑)(鬼|狗)们?", "a(b)?c", "(月销|年销)了?{num}万"]:
        best = required_literals(pattern)
        assert best is not None and sorted(best) in [sorted(g) for g in required_literal_groups(pattern)]
    assert required_literal_groups("[0-9]+[a-z]") == []
    # every match holds a literal of every set
    import re

    from detectors.rules import expand_macros

    for pattern, texts in [
        ("(仅|只)剩(下)?(最后)?{num}(单|件)", ["仅剩三单", "只剩下最后10件了"]),
        ("(全网|全国)(最低|最便宜)(价)?", ["全网最低", "全国最便宜价"]),
    ]:
        for text in texts:
            m = re.search(expand_macros(pattern), text)
            assert m is not None
            for g in required_literal_groups(pattern):
                assert any(lit in m.group(0) for lit in g), (pattern, text, g)


def test_collect_errors_reports_every_bad_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PACK.replace("severity: high", "severity: urgent"))
    write(tmp_path, "b.yaml", PACK.replace("pack: test", "pack: other").replace("code: A1", "code: first"))
    errors = collect_errors([tmp_path])
    assert [(e.path.name, e.line) for e in errors] == [("a.yaml", 7), ("b.yaml", 6)]


def test_site_layer_disables_and_reweights_shipped_rules(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(
        site,
        "overrides.yaml",
        """\
        pack: site
        overrides:
          disable: [false_claim.a1.superlative]
          patch:
            price_fraud.b3.time_pressure: {severity: low, threshold: 99}
        """,
    )
    base = RuleSet.load([DEFAULT_RULES_DIR])
    layered = RuleSet.load([DEFAULT_RULES_DIR, site])
    assert layered.version != base.version
    assert not layered.rule("false_claim.a1.superlative").enabled
    tp = layered.rule("price_fraud.b3.time_pressure")
    assert (tp.severity, tp.threshold) == ("low", 99)
    hits, _, _ = layered.match("这是市面上最好的面霜")
    assert "false_claim.a1.superlative" not in {h.rule_id for h in hits}
    hits, _, _ = base.match("这是市面上最好的面霜")
    assert "false_claim.a1.superlative" in {h.rule_id for h in hits}


def test_site_layer_replaces_a_rule_by_id(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(
        site,
        "mine.yaml",
        PACK.replace("id: test.a1.best", "id: false_claim.a1.superlative")
        .replace("terms: [最好的]", "terms: [顶呱呱]")
        .replace("这是最好的", "顶呱呱"),
    )
    rs = RuleSet.load([DEFAULT_RULES_DIR, site])
    assert sum(r.id == "false_claim.a1.superlative" for r in rs.rules) == 1
    hits, _, _ = rs.match("顶呱呱的面霜")
    assert {h.rule_id for h in hits} == {"false_claim.a1.superlative"}


def test_override_of_unknown_id_names_the_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(
        site,
        "o.yaml",
        """\
        pack: site
        overrides:
          disable:
            - false_claim.a1.superlative
            - no.such.rule
        """,
    )
    with pytest.raises(RulePackError) as ei:
        RuleSet.load([DEFAULT_RULES_DIR, site])
    assert (
        ei.value.line == 5 and ei.value.field == "overrides.disable[1]" and "no.such.rule" in ei.value.reason
    )


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    p = write(tmp_path, "p.yaml", PACK)
    v1 = RuleSet.load([tmp_path]).version
    assert len(v1) == 16 and int(v1, 16) >= 0
    assert RuleSet.load([tmp_path]).version == v1
    p.write_text(PACK.replace("severity: high", "severity: low"), encoding="utf-8")
    assert RuleSet.load([tmp_path]).version != v1


def test_detections_record_the_version(tmp_path: Path) -> None:
    from asr.types import Utterance

    write(tmp_path, "p.yaml", PACK)
    rs = RuleSet.load([tmp_path])
    (d,) = rs.detect(Utterance(0, 1.0, 2.0, "这是最好的"))
    assert d.details["rules_version"] == rs.version


def test_readme_examples_load_and_pass(tmp_path: Path) -> None:
    import re

    from detectors.evaluate import run_phrase_tables

    md = (DEFAULT_RULES_DIR / "README.md").read_text(encoding="utf-8")
    pack, overrides = re.findall(r"```yaml\n(.*?)```", md, re.S)
    write(tmp_path / "a", "pack.yaml", pack)
    count, failures = run_phrase_tables(RuleSet.load([tmp_path / "a"]))
    assert count == 3 and failures == []
    write(tmp_path / "b", "site.yaml", overrides)
    rs = RuleSet.load([DEFAULT_RULES_DIR, tmp_path / "b"])
    assert not rs.rule("false_claim.a1.top_grade").enabled
