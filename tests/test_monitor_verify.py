"""The evidence verification pass run by the live monitor (the review app's `VerifyScheduler`, shared):
a damaged clip is stored as such with no review app running, and the monitor's last pass shows in its
status file, `livewatch status` (table, --json, --metrics) and the ops webhook. The pass is called
directly (no schedule to wait for); the scheduled thread is exercised by tests/test_live_paths.py.
The evidence store is a real scan (scripted transcript, real ffmpeg and SQLite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
from live_helpers import LookupHolder, LookupRules
from sqlalchemy import select

from app.config import RootConfig
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from app.pipeline import Scanner, ScanOptions
from asr.fake import FakeTranscriber
from review.monitor_status import metrics_text, verify_problems, verify_status
from store.db import Database
from store.models import EvidenceCheck

ROOT = Path(__file__).resolve().parents[1]
LINES = [(13.0, 16.0, "这款手机壳是顶级材质"), (40.0, 43.0, "全网最低价只要九十九")]


@pytest.fixture()
def scanned(tmp_path: Path, corpus: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "lw-data"
    db = Database.for_data_dir(data)
    scanner = Scanner(RootConfig(), db, transcriber=FakeTranscriber.from_lines(LINES), data_dir=data)
    result = scanner.scan(corpus / "broadcast_0.mp4", ScanOptions(stream_id="room-v", video=False))
    db.dispose()
    ids = [a["alert_id"] for a in result.alerts]
    assert len(ids) >= 2, "the scripted lines raised too few alerts"
    return data, ids


def _monitor(cfg: MonitorConfig, db: Database, data: Path) -> Monitor:
    """A monitor that is never started (no model, no rules needed)."""
    return Monitor(
        cfg, db, data, transcriber=cast(Any, object()), rule_holder=lambda dirs: LookupHolder(LookupRules([]))
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEWATCH_DATA_DIR", "LIVEWATCH_DB_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_monitor_records_a_damaged_clip_and_shows_its_last_pass(scanned: tuple[Path, list[str]]) -> None:
    data, ids = scanned
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(data),
            "evidence": {"verify_interval_s": 900},
            "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": "k"}],  # never started here
            "streams": [{"id": "room-v", "url": "hls://http://127.0.0.1:9/none.m3u8"}],
        }
    )
    db = Database.for_data_dir(data)
    mon = _monitor(cfg, db, data)
    try:
        assert mon.verifier.interval_s == 900 and mon.verifier.first_delay_s == 5.0
        assert mon.status()["evidence_verify"]["last"] is None  # no pass yet

        first = mon.verifier.run_pass()
        assert first is not None and first.ok and first.files >= 8 and first.alerts == len(ids)
        assert first.signatures["valid"] == len(ids)
        assert mon.webhooks is not None and not mon.webhooks._ops  # nothing to report

        clip = next((data / "evidence" / ids[0]).glob("clip.*"))
        original = clip.read_bytes()
        raw = bytearray(original)
        raw[len(raw) // 2] ^= 0x01  # same size: only the hash can tell
        clip.write_bytes(bytes(raw))
        (data / "evidence" / ids[1] / "snapshot.jpg").unlink()
        second = mon.verifier.run_pass()
        assert second is not None and not second.ok
        assert sorted(second.bad) == sorted(
            [(ids[0], clip.name, "changed"), (ids[1], "snapshot.jpg", "missing")]
        )
        with db.session() as s:  # stored, as the review app's pass would have stored it
            states = {(r.alert_id, r.name): r.state for r in s.scalars(select(EvidenceCheck))}
        assert states[(ids[0], clip.name)] == "changed" and states[(ids[1], "snapshot.jpg")] == "missing"
        assert sum(v == "ok" for v in states.values()) == second.files - 2

        # the ops webhook hears of the two files once, not again on the next pass finding the same
        ops = [body for _, body, _ in mon.webhooks._ops]
        assert [o["event"] for o in ops] == ["evidence_not_as_captured"]
        assert {(f["alert_id"], f["name"], f["state"]) for f in ops[0]["files"]} == set(second.bad)
        mon.verifier.run_pass()
        assert len(mon.webhooks._ops) == 1

        # the status file a running monitor writes every second, and what reads it
        mon.housekeeping.write_status()
        now = time.time()
        v = verify_status(data, now)
        assert v is not None and v["passes"] == 3 and v["interval_s"] == 900 and v["error"] is None
        assert v["last"]["states"] == {"ok": second.files - 2, "missing": 1, "changed": 1}
        assert v["last"]["bad"] == 2 and v["last"]["ok"] is False
        (line,) = verify_problems(v)
        assert "evidence not as captured" in line and "1 missing, 1 changed" in line
        text = metrics_text(True, [], None, v)
        assert "livewatch_monitor_evidence_verify_ok 0" in text
        assert 'livewatch_monitor_evidence_verify_files{state="changed"} 1' in text
        assert "livewatch_monitor_evidence_verify_passes_total 3" in text

        table = _cli("status", "--data-dir", str(data))
        assert table.returncode == 0, table.stderr
        assert "evidence not as captured" in table.stdout and "1 missing, 1 changed" in table.stdout
        js = json.loads(_cli("status", "--data-dir", str(data), "--json").stdout)
        assert js["evidence_verify"]["last"]["bad"] == 2 and any(
            "not as captured" in p for p in js["problems"]
        )
        prom = _cli("status", "--data-dir", str(data), "--metrics").stdout
        assert 'livewatch_monitor_evidence_verify_files{state="missing"} 1' in prom

        # a pass that fails is shown, and the next good one clears it
        db.dispose()
        mon.verifier.db = None  # as if the database went away
        assert mon.verifier.run_pass() is None
        err = mon.status()["evidence_verify"]
        assert err["error"] and err["error_ts"] and err["last"]["bad"] == 2  # the last good pass is kept
        assert any("pass failed" in p for p in verify_problems(err))
        mon.verifier.db = db
        clip.write_bytes(original)  # put back: the next pass finds it as captured again
        third = mon.verifier.run_pass()
        assert third is not None and third.bad == [(ids[1], "snapshot.jpg", "missing")]
        assert mon.status()["evidence_verify"]["error"] is None
    finally:
        db.dispose()
    assert verify_status(data, time.time() + 60) is None  # the status file has gone stale: no monitor


def test_verification_off_starts_no_thread(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "evidence": {"verify_interval_s": 0},
            "streams": [{"id": "r", "url": "x.mp4"}],
        }
    )
    db = Database.for_data_dir(tmp_path)
    try:
        mon = _monitor(cfg, db, tmp_path)
        mon.verifier.start()
        assert mon.verifier._thread is None and mon.status()["evidence_verify"]["interval_s"] == 0
    finally:
        db.dispose()


def test_a_full_disk_is_told_apart_from_other_evidence_errors() -> None:
    import errno

    from ingest.disk import no_space as _no_space
    from review.monitor_status import deferred_problems

    assert _no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert _no_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    ffmpeg = (
        "ffmpeg clip re-encode failed (228): Task finished with error code: -28 (No space left on device)"
    )
    assert _no_space(RuntimeError(ffmpeg))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise ValueError("evidence failed") from e
    except ValueError as wrapped:
        assert _no_space(wrapped)
    assert not _no_space(RuntimeError("ffmpeg clip copy failed (1): Invalid data found"))
    assert not _no_space(OSError(errno.EACCES, "Permission denied"))
    assert deferred_problems(None) == []
    (line,) = deferred_problems({"alerts": 2, "error": "no space left on device ... in /data/evidence"})
    assert line.startswith("evidence of 2 alert(s) waiting for disk space: no space left")
