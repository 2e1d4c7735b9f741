"""`livewatch rules check|test|explain` and `livewatch eval`, through the real command line app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
DATA = ROOT / "tests" / "data"
runner = CliRunner()

GOOD = """\
pack: site
category: false_claim
law: 广告法 第9条
rules:
  - id: site.a1.words
    code: A1
    severity: high
    terms: [顶呱呱]
    should_flag: [顶呱呱]
    should_not_flag: [很好]
"""


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_check_shipped_packs() -> None:
    res = invoke("rules", "check")
    assert res.exit_code == 0, res.output
    assert "false_claim.yaml" in res.output and "ok:" in res.output and "version" in res.output


def test_check_rejects_a_malformed_pack_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        GOOD.replace("site.a1.words", "site.a1.other").replace(
            "    terms: [顶呱呱]\n", '    regex: ["(顶+)+呱"]\n'
        ),
        encoding="utf-8",
    )
    res = invoke("rules", "check", str(tmp_path))
    assert res.exit_code == 2
    assert f"{tmp_path / 'bad.yaml'}:8: rules[0].regex[0]:" in res.output
    assert "backtracking" in res.output


def test_check_a_site_layer_against_the_shipped_packs(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text(
        "pack: site\noverrides:\n  patch:\n    nope.rule: {severity: low}\n", encoding="utf-8"
    )
    res = invoke("rules", "check", "--rules", str(tmp_path))
    assert res.exit_code == 2 and "o.yaml:4: overrides.patch.nope.rule: unknown rule id" in res.output


def test_test_runs_every_phrase_table() -> None:
    res = invoke("rules", "test")
    assert res.exit_code == 0, res.output
    passed = int(res.output.strip().splitlines()[-1].split()[0])
    assert passed >= 400 and " 0 failed" in res.output


def test_test_shows_failures_as_a_table(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        GOOD.replace("should_not_flag: [很好]", "should_not_flag: [顶呱呱的面霜]"), encoding="utf-8"
    )
    res = invoke("rules", "test", str(tmp_path))
    assert res.exit_code == 1
    assert (
        "1 phrase-table failures" in res.output
        and "site.a1.words" in res.output
        and "顶呱呱的面霜" in res.output
    )
    assert "1 passed, 1 failed" in res.output


def test_explain_shows_steps_pinyin_and_scores() -> None:
    res = invoke("rules", "explain", "這個金華業原價99元，今天直播間只要199元")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "t2s" in out and "这个金华业原价99元" in out
    assert "yuan jia" in out
    assert "price_fraud.b2.reference_price" in out and "100.0" in out


def test_explain_lists_silenced_hits() -> None:
    res = invoke("rules", "explain", "不是全网最低价但是品质有保障")
    assert res.exit_code == 0
    assert "fires: 0" in res.output and "negation" in res.output


def test_eval_clips_and_broadcast_text(tmp_path: Path) -> None:
    alerts = tmp_path / "a.jsonl"
    res = invoke(
        "eval",
        str(CORPUS / "clips.jsonl"),
        str(CORPUS / "broadcast_1.json"),
        "--alerts-out",
        str(alerts),
        "--min-precision",
        "0.95",
        "--min-recall",
        "0.95",
    )
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("recall=1.000 precision=1.000")
    assert "[tune] recall=1.000 precision=1.000" in res.output
    assert (
        "per category" in res.output
        and "per rule" in res.output
        and "false_claim.a3.medical_cure" in res.output
    )
    rows = [json.loads(x) for x in alerts.read_text(encoding="utf-8").splitlines()]
    assert rows and {"category", "start_s", "end_s", "source", "rule", "rules_version"} <= set(rows[0])


def test_eval_on_an_asr_transcript(tmp_path: Path) -> None:
    res = invoke("eval", str(CORPUS / "broadcast_0.json"), "--transcript", str(DATA / "asr_broadcast_0.json"))
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    recall, precision = (float(x.split("=")[1]) for x in last.split()[:2])
    assert recall >= 0.95 and precision >= 0.95
    assert "[tune] recall=" in res.output and "[test] recall=" in res.output


def test_eval_reports_halves_and_hides_test_lines(tmp_path: Path) -> None:
    from detectors.split import split_of

    lines = tmp_path / "l.jsonl"
    rows = [
        {
            "id": f"x{i}",
            "text": "这款面霜是全网最低价" if i % 2 else "今天天气不错",
            "labels": ["false_claim"] if i % 2 else ["clean"],
        }
        for i in range(40)
    ]
    rows.append({"id": "ctx", "text": "需要价格历史", "labels": ["price_fraud"], "context": "price history"})
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "s.json"
    res = invoke("eval", str(lines), "--json", str(out))
    assert res.exit_code == 0, res.output
    summary = json.loads(out.read_text(encoding="utf-8"))
    n_test = sum(split_of(r["id"]) == "test" for r in rows[:-1])
    assert 0 < n_test < 40
    test = summary["test"]
    assert test["categories"]["false_claim"]["tp"] + test["categories"]["false_claim"]["fn"] == sum(
        split_of(r["id"]) == "test" and r["labels"] != ["clean"] for r in rows[:-1]
    )
    assert test["clean_lines"] + summary["tune"]["clean_lines"] == 20  # the context line is left out
    # a rule set that misses everything lists tune misses but never prints a test line
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "p.yaml").write_text(
        "pack: p\ncategory: vulgar\nlaw: x\nrules:\n  - id: vulgar.c1.x\n    code: C1\n    severity: low\n"
        "    terms: [不存在的词语]\n    should_flag: [不存在的词语]\n    should_not_flag: [你好]\n",
        encoding="utf-8",
    )
    res = invoke("eval", str(lines), "--rules", str(rules))
    assert "test: " in res.output and "lines not shown" in res.output
    assert "tune: missed" in res.output


def test_eval_phrase_tables_split() -> None:
    res = invoke("eval", "--phrase-tables", "--rules-only")  # the packs' own unit tests
    assert res.exit_code == 0, res.output
    assert "[tune] recall=1.000 precision=1.000" in res.output


@pytest.mark.parametrize("content", ["not json", '{"no_spans": 1}'])
def test_eval_bad_labels_exit_2(tmp_path: Path, content: str) -> None:
    p = tmp_path / "x.json"
    p.write_text(content, encoding="utf-8")
    res = invoke("eval", str(p))
    assert res.exit_code == 2 and "x.json" in res.output


def test_eval_gates_on_precision(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_text(
        json.dumps({"text": "全网最低价", "labels": ["clean"]}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    res = invoke("eval", str(p), "--min-precision", "0.9")
    assert res.exit_code == 1 and "recall=1.000 precision=0.000" in res.output
