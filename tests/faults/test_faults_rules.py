"""The rules folder of a running monitor replaced by hostile files, one after another.

A monitor records a loopback HLS broadcast (the fake model, the real rule engine and its reloading
holder over a site folder of four packs, one per category). While it alerts, the site folder's packs
are taken away and a hostile file put in their place, then the next hostile file instead of that one:
a YAML alias bomb ("billion laughs"), a recursive alias, nesting 200 deep, 1,001 aliases, a file over
the size limit, bytes that are not UTF-8, a regex of eight adjacent quantifiers, a regex that does not
compile. Each refusal must be visible in the monitor's status and metrics within a few reload periods,
and the old set must keep alerting: every labelled line recorded whole has its one alert, none twice,
evidence hashes verify, and alerts arrive after the last fault. Memory growth and refusal times are
printed in the fault table; they are asserted only as hang/blow-up guards.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_harness import (
    CATEGORIES,
    FaultRow,
    alert_count,
    alerts_after,
    check_alerts,
    check_evidence,
    evidence_settled,
    hls_server,
    recorded_until,
    short_script,
    stream_cfg,
    wait_for,
)
from hostile_rules import ADJACENT_QUANTIFIERS, BOMB, REGEX_PACK
from live_helpers import ToneScript, ToneTranscriber

from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from review.monitor_status import metrics_text
from store.db import Database

pytestmark = pytest.mark.slow

CODES = {"false_claim": "A1", "price_fraud": "B2", "vulgar": "C1", "fake_sales": "A5"}


def hostile_files() -> list[tuple[str, bytes]]:
    return [
        ("alias_bomb.yaml", BOMB.encode()),
        ("recursive_alias.yaml", b"a: &a [*a]\n"),
        ("deep_nesting.yaml", ("a: " + "[" * 200 + "]" * 200 + "\n").encode()),
        ("many_aliases.yaml", ("x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(1001))).encode()),
        ("oversized.yaml", b"a: " + b"x" * (16 * 1024 * 1024 + 10) + b"\n"),
        ("not_utf8.yaml", b"pack: \xff\xfe\x00\x81 site\nrules: [\x80\x80]\n"),
        ("slow_regex.yaml", REGEX_PACK.format(regex=ADJACENT_QUANTIFIERS).encode()),
        ("broken_regex.yaml", REGEX_PACK.format(regex="(好").encode()),
    ]


def write_site_packs(site: Path, script: ToneScript) -> None:
    """One pack per category whose terms are the product names of that category's lines."""
    names: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for line in script.lines():
        for c in line.labels:
            names[c].append(line.text.split("商品")[0] + "商品")
    for c, terms in names.items():
        (site / f"site_{c}.yaml").write_text(
            f"pack: site_{c}\ncategory: {c}\nlaw: 广告法\nrules:\n"
            f"  - id: site.{c}\n    code: {CODES[c]}\n    severity: high\n"
            f"    terms: [{', '.join(terms)}]\n"
            f"    should_flag: [{terms[0]}]\n    should_not_flag: [商品]\n",
            encoding="utf-8",
        )


def more_alerts(db: Database, than: int) -> Callable[[], bool]:
    return lambda: alert_count(db, "room") > than


def refused(mon: Monitor, times: int) -> Callable[[], bool]:
    return lambda: int(holder_status(mon)["reload_failures"]) >= times


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def holder_status(mon: Monitor) -> dict:  # type: ignore[type-arg]
    holders = mon.status()["rules"]["holders"]
    assert len(holders) == 1, holders
    return dict(holders[0])


def test_rules_folder_replaced_by_hostile_files(tmp_path: Path, fault_row: FaultRow) -> None:
    lines = 22  # 66 s: 8 faults about 4 s apart, with an alert before and after each
    script = short_script(lines)
    data = tmp_path / "data"
    site = tmp_path / "site"
    site.mkdir()
    write_site_packs(site, script)
    with hls_server(script, tmp_path, list_size=30) as server:
        config = MonitorConfig.model_validate(
            {
                "data_dir": str(data),
                "alerts": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
                "video": {"enabled": False},
                "semantic": {"enabled": False},
                "rules": {"include_defaults": False, "dirs": [str(site)], "reload_interval_s": 0.2},
                "streams": [stream_cfg("room", server.url)],
            }
        )
        db = Database.for_data_dir(data)
        mon = Monitor(config, db, data, transcriber=ToneTranscriber(script))
        good_version = holder_status(mon)["version"]
        mon.start()
        try:
            rss0 = max_rss_mb()
            refusals: list[str] = []
            last_fault_s = 0.0
            previous: Path | None = None
            for i, (name, body) in enumerate(hostile_files(), start=1):
                # one more alert from the old set before each fault
                wait_for(more_alerts(db, alert_count(db, "room")), 30, f"an alert before fault {i}")
                for p in site.glob("site_*.yaml"):
                    p.unlink()
                if previous is not None:
                    previous.unlink()
                previous = site / name
                previous.write_bytes(body)
                fault_row.injected += 1
                last_fault_s = recorded_until(db, "room")
                t0 = time.monotonic()
                wait_for(refused(mon, i), 20, f"the refusal of {name}")
                took = time.monotonic() - t0
                st = holder_status(mon)
                assert st["ok"] is False and st["version"] == good_version, st
                assert name in (st["last_failure"] or ""), st
                refusals.append(f"{name} {took:.1f} s")
                assert took < 15, f"{name} refused only after {took:.1f} s"  # a hang guard only
            # the old set keeps alerting after the last fault
            n = alert_count(db, "room")
            wait_for(lambda: alert_count(db, "room") > n, 30, "an alert after the last fault")
            fault_row.survived = fault_row.injected
            print(
                f"last fault refused at {recorded_until(db, 'room'):.0f} s of a {script.duration_s:.0f} s broadcast"
            )
            metrics = metrics_text(True, [], mon.status()["rules"])
            wait_for(lambda: server.finished, 120, "the end of the broadcast")
            wait_for(lambda: recorded_until(db, "room") >= script.duration_s - 1.5, 30, "the recording's end")
            wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
            rss_growth = max_rss_mb() - rss0
        finally:
            mon.stop()
    # the holder looks for changes when it is asked for the rules (each analysed batch), so a refusal
    # shows by the next line spoken (3 s apart here)
    fault_row.notes.append("refused (time to show in status): " + ", ".join(refusals))
    fault_row.notes.append(f"peak RSS grew {rss_growth:.0f} MB across the faults")
    assert rss_growth < 300, f"peak RSS grew {rss_growth:.0f} MB"  # a blow-up guard only
    assert f'livewatch_rules_reload_ok{{dirs="{site}"}} 0' in metrics, metrics
    assert f'livewatch_rules_reload_failures_total{{dirs="{site}"}} {fault_row.injected}' in metrics, metrics
    chk = check_alerts(db, script, "room")
    fault_row.lost += chk.lost
    fault_row.duplicated += chk.duplicated
    fault_row.notes.append(f"room: {chk.expected} labelled line(s) recorded whole, {chk.alerts} alert(s)")
    files, ev_problems = check_evidence(db, data)
    fault_row.notes.append(f"evidence files verified: {files}")
    assert not chk.problems, chk.problems
    assert not ev_problems, ev_problems
    assert alerts_after(db, "room", last_fault_s) > 0
