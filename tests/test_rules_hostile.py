"""Untrusted config never stalls detection: YAML limits, regex vetting, the per-line budget, and a
refused reload that keeps the old set running and says so (issue 12)."""

from __future__ import annotations

import json
import logging
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hostile_rules import BOMB
from typer.testing import CliRunner

from alerts.webhook import WebhookConfig, sign
from app.cli import app
from app.config import ConfigError
from app.monitor_config import load_monitor_config
from app.webhooks import WebhookDelivery
from asr.types import Utterance
from detectors import engine
from detectors.config import DEFAULT_RULES_DIR
from detectors.engine import MATCH_STATS, RuleHolder, RuleSet
from detectors.price_config import PriceConfigError, load_price_config
from detectors.rules import RulePackError, collect_errors, load_rules, regex_problem
from detectors.yamlsafe import YamlLimits, YamlLoadError, compose, load_file
from review.monitor_status import as_json, metrics_text, rules_problems

PACK = """\
pack: site
category: false_claim
law: 广告法 第9条
rules:
  - id: site.a1.words
    code: A1
    severity: high
    terms: [{terms}]
    should_flag: [顶呱呱]
    should_not_flag: [很好]
"""

runner = CliRunner()


def test_the_bomb_is_small() -> None:
    assert len(BOMB.encode()) < 600 and BOMB.count("*") == 72


def test_alias_bomb_rule_pack_is_refused_fast_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB, encoding="utf-8")
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(RulePackError) as ei:
        load_rules([tmp_path])
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path / 'bomb.yaml'}:") and "alias" in msg, msg
    assert ei.value.line > 1
    print(f"alias bomb refused in {elapsed * 1000:.1f} ms, peak {peak / 1024:.0f} KiB")
    assert elapsed < 10, elapsed  # a hang guard only (refused in milliseconds; the figure is printed)
    assert peak < 20 * 1024 * 1024, peak  # measured: well under 1 MB


def test_rules_check_exits_2_on_the_bomb(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB, encoding="utf-8")
    t0 = time.perf_counter()
    res = runner.invoke(app, ["rules", "check", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    assert "bomb.yaml:" in res.output and "alias" in res.output
    elapsed = time.perf_counter() - t0
    print(f"rules check on the bomb: exit 2 in {elapsed:.2f} s (in-process)")
    assert elapsed < 30, elapsed  # a hang guard only; the figure is printed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: &a [*a]\n", "recursive YAML alias"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested too deeply"),
        ("a: [1, 2\n", "YAML error"),
        ("x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(1001)), "too many YAML aliases"),
    ],
)
def test_hostile_yaml_shapes_are_refused(text: str, reason: str) -> None:
    with pytest.raises(YamlLoadError) as ei:
        compose(text, "f.yaml")
    assert str(ei.value).startswith("f.yaml:") and reason in str(ei.value)


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(YamlLoadError, match=r"big.yaml:1: file too large"):
        load_file(big, YamlLimits(max_bytes=1000))


def test_ordinary_anchors_and_merge_keys_still_load() -> None:
    root = compose("base: &b {k: 1}\nother:\n  <<: *b\n  z: 2\n", "ok.yaml")
    assert root is not None


def test_monitor_and_price_configs_refuse_the_bomb(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(BOMB.replace("pack: site\n", "streams: []\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"monitor.yaml:\d+: .*alias"):
        load_monitor_config(cfg)
    price = tmp_path / "price.yaml"
    price.write_text(BOMB.replace("pack: site\n", ""), encoding="utf-8")
    with pytest.raises(PriceConfigError, match=r"price.yaml:\d+: .*alias"):
        load_price_config(price)
    res = runner.invoke(app, ["status", "--config", str(cfg), "--data-dir", str(tmp_path)])
    assert res.exit_code != 0 and "alias" in str(res.exception or res.output)


# -- regex vetting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "好*好*好*好*好*好*好*好*吗",
        "好+好+好+好+好+好+好+好+吗",
        "a*a*b",
        ".*.*x",
        "x.*好.*y",
        r"x\d+\d+y",
        "(?:a+)(?:a+)b",
        "(?:x|a+)a+",
        "{num}{num}元",
        "a{0,9}a{0,9}a{0,9}a{0,9}b",
        "(a|aa)*c",
        "(?:a?a)+c",
        "(a|a?)+c",
        "(顶+)+呱",
    ],
)
def test_regex_vetting_refuses_slow_patterns(pattern: str) -> None:
    problem = regex_problem(pattern)
    assert problem is not None and "backtracking" in problem, (pattern, problem)


@pytest.mark.parametrize(
    "pattern",
    [
        "{num}(块|元)?.{0,4}(成为|当)",
        "(下线|下级).{0,6}(提成|返利)",
        "{big}(单|件)",
        "x.*y",
        "a+b+",
        "(ab|a)*c",  # unambiguous: linear
        r"\d+元",
        "x.{0,5}y.{0,5}z",
    ],
)
def test_regex_vetting_accepts_safe_patterns(pattern: str) -> None:
    assert regex_problem(pattern) is None


def test_every_shipped_pack_still_passes() -> None:
    assert collect_errors([DEFAULT_RULES_DIR]) == []


def test_eight_adjacent_quantifiers_are_refused_by_rules_check(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(
        PACK.format(terms="顶呱呱").replace(
            "    terms: [顶呱呱]\n", '    regex: ["好*好*好*好*好*好*好*好*吗"]\n'
        ),
        encoding="utf-8",
    )
    res = runner.invoke(app, ["rules", "check", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "slow.yaml:8: rules[0].regex[0]:" in res.output, res.output


# -- per-line budget ----------------------------------------------------------------------------------


class StepClock:
    """Each reading is one second later: every line is over any budget after its first rule."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_a_line_over_budget_is_skipped_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    rs = RuleSet.load([DEFAULT_RULES_DIR])
    line = "这款面霜是全网最低价，国家级产品，第一品牌"
    assert rs.match(line)[0], "the line fires without a budget"
    before = MATCH_STATS.snapshot()["lines_over_budget"]
    rs.budget_clock = StepClock()
    rs.line_budget_s = 0.2
    with caplog.at_level(logging.ERROR, logger="detectors.engine"):
        hits, _, _ = rs.match(line)
    assert hits == []
    assert MATCH_STATS.snapshot()["lines_over_budget"] == before + 1
    assert any("OVER BUDGET" in r.getMessage() for r in caplog.records)
    rs.line_budget_s = None  # no budget: the same clock never skips
    assert rs.match(line)[0]


# -- reloads ------------------------------------------------------------------------------------------


def _fires(holder: RuleHolder, text: str) -> list[str]:
    return [d.rule_id for d in holder.maybe_reload().detect(Utterance(0, 0.0, 1.0, text))]


def test_a_bomb_dropped_into_the_rules_dir_keeps_the_old_set_alerting(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    seen: list[str] = []
    holder = RuleHolder([tmp_path], min_interval_s=0.0, on_failure=seen.append)
    v1 = holder.current.version
    (tmp_path / "zz_bomb.yaml").write_text(BOMB, encoding="utf-8")
    t0 = time.perf_counter()
    assert _fires(holder, "这个面霜顶呱呱") == ["site.a1.words"]
    print(f"bomb refused and the old set answered in {time.perf_counter() - t0:.3f} s")
    assert time.perf_counter() - t0 < 30  # a hang guard only
    assert holder.current.version == v1 and holder.failures == 1
    assert holder.last_failure is not None and holder.last_failure.startswith("rules reload failed: ")
    assert "zz_bomb.yaml:" in holder.last_failure and "alias" in holder.last_failure
    assert holder.last_failure_ts is not None and seen == [holder.last_failure]
    st = holder.status()
    assert st["ok"] is False and st["reload_failures"] == 1 and st["version"] == v1
    # the file removed: the next reload is good again; the counter stays
    (tmp_path / "zz_bomb.yaml").unlink()
    assert _fires(holder, "这个面霜顶呱呱") == ["site.a1.words"]
    assert holder.status()["ok"] is True and holder.failures == 1


def test_a_reload_that_times_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site.yaml").write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    holder = RuleHolder([tmp_path], min_interval_s=0.0, reload_timeout_s=0.05)
    v1 = holder.current.version
    release = threading.Event()
    real_load = RuleSet.load

    def stuck(dirs: list[Path]) -> RuleSet:
        release.wait(30)
        return real_load(dirs)

    monkeypatch.setattr(engine.RuleSet, "load", staticmethod(stuck))
    (tmp_path / "site.yaml").write_text(PACK.format(terms="顶呱呱, 天下无双"), encoding="utf-8")
    assert _fires(holder, "顶呱呱") == ["site.a1.words"]
    assert holder.current.version == v1 and "timed out" in (holder.last_failure or "")
    # while the stuck load runs, no second one starts
    (tmp_path / "site.yaml").write_text(PACK.format(terms="顶呱呱, 天下"), encoding="utf-8")
    holder.maybe_reload()
    assert holder.failures == 2 and "still running" in (holder.last_failure or "")
    release.set()
    running = holder._running
    assert running is not None
    running.join(30)
    monkeypatch.setattr(engine.RuleSet, "load", real_load)
    holder.reload_timeout_s = 60.0  # the real load must not race a 50 ms limit on a busy machine
    holder.maybe_reload(force=True)
    assert holder.last_error is None and _fires(holder, "天下") == ["site.a1.words"]


def test_status_metrics_and_ops_webhook_show_a_refused_reload() -> None:
    rules = {
        "holders": [
            {
                "dirs": ["/site/rules"],
                "version": "abc",
                "ok": False,
                "error": "x.yaml:3: yaml: alias bomb",
                "reload_failures": 2,
                "last_failure": "rules reload failed: x.yaml:3: yaml: alias bomb",
                "last_failure_ts": 1_700_000_000.0,
                "reloads": 0,
            }
        ],
        "matching": {"lines_over_budget": 3, "rules_skipped": 7, "last_over_budget_text": "好好"},
    }
    text = metrics_text(True, [], rules)
    assert 'livewatch_rules_reload_ok{dirs="/site/rules"} 0' in text
    assert 'livewatch_rules_reload_failures_total{dirs="/site/rules"} 2' in text
    assert "livewatch_rules_last_reload_failure_timestamp_seconds" in text
    assert "livewatch_rules_lines_over_budget_total 3" in text
    problems = rules_problems(rules)
    assert (
        problems[0].startswith("rules reload failed: x.yaml:3")
        and "still running rule set abc" in problems[0]
    )
    assert as_json(True, [], rules)["problems"] == problems


def test_ops_event_is_posted_signed(tmp_path: Path) -> None:
    import httpx

    from store.db import Database

    got: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200 if len(got) > 1 else 503)

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    hook = WebhookConfig(url="http://ops.invalid/hook", secret="k")
    d = WebhookDelivery(db, [hook], transport=httpx.MockTransport(handler), clock=lambda: 1000.0)
    try:
        d.notify_ops("rules_reload_failed", message="rules reload failed: x.yaml:3: alias")
        assert d.deliver_ops() == 0  # 503: kept for the next round
        assert d.deliver_ops() == 1
        body = json.loads(got[-1].content)
        assert body["type"] == "ops" and body["event"] == "rules_reload_failed"
        assert got[-1].headers["X-Livewatch-Signature"] == sign(b"k", "1000", got[-1].content)
        assert got[-1].headers["X-Livewatch-Delivery"] == "ops-1"
    finally:
        d.stop()
        db.dispose()


def test_monitor_status_and_ops_webhook_after_a_bomb_in_its_rules_dir(tmp_path: Path) -> None:
    from live_helpers import Receiver

    from app.monitor import Monitor
    from app.monitor_config import MonitorConfig
    from store.db import Database

    site = tmp_path / "site"
    site.mkdir()
    (site / "site.yaml").write_text(PACK.format(terms="顶呱呱"), encoding="utf-8")
    rx = Receiver([])
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "rules": {"dirs": [str(site)], "reload_interval_s": 0.001},
            "video": {"enabled": False},
            "webhooks": [{"url": rx.url, "secret": "k"}],
            "streams": [{"id": "room", "url": str(tmp_path / "none.ts")}],
        }
    )
    db = Database.for_data_dir(tmp_path)
    mon = Monitor(cfg, db, tmp_path)
    try:
        holder = mon.base_holder
        (site / "zz_bomb.yaml").write_text(BOMB, encoding="utf-8")
        rules = holder.maybe_reload(force=True)  # type: ignore[call-arg]
        assert [d.rule_id for d in rules.detect(Utterance(0, 0.0, 1.0, "顶呱呱"))] == ["site.a1.words"]
        st = mon.status()["rules"]
        assert st["holders"][0]["ok"] is False and st["holders"][0]["reload_failures"] == 1
        assert "zz_bomb.yaml" in st["holders"][0]["last_failure"]
        assert mon.webhooks is not None and mon.webhooks.deliver_ops() == 1
        body = json.loads(rx.requests[-1][1])
        assert body["event"] == "rules_reload_failed" and "zz_bomb.yaml" in body["message"]
    finally:
        if mon.webhooks is not None:
            mon.webhooks.stop()
        rx.close()
        db.dispose()
