"""Disk full on the evidence volume: the evidence folder is a 2 MiB tmpfs mount, filled to the last
byte twice while a monitor runs (a tone broadcast read at its own speed, the fake model).

While it is full: the error says what and where (log, the alert's `evidence_error`, `livewatch status`),
alerts keep being raised and stored with their evidence pending (not failed, not lost), and evidence
written before stays whole. Once space is freed the waiting evidence is written. At the end: no alert
lost or duplicated, every evidence file hashes to what was stored. Needs root and mount(8); skipped
elsewhere with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_harness import (
    FaultRow,
    alert_count,
    can_mount_tmpfs,
    check_alerts,
    check_evidence,
    evidence_settled,
    fill_disk,
    make_monitor,
    recorded_until,
    short_script,
    stream_cfg,
    tmpfs_mount,
    wait_for,
)
from sqlalchemy import func, select

from review.monitor_status import deferred_problems, deferred_status
from store.db import Database
from store.models import AlertRow

pytestmark = pytest.mark.slow


def _at_least(get: Callable[[], int], n: int) -> Callable[[], bool]:
    return lambda: get() >= n


def _counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {
            k: int(n)
            for k, n in s.execute(
                select(AlertRow.evidence_status, func.count()).group_by(AlertRow.evidence_status)
            )
        }


def _waiting(db: Database) -> list[tuple[str, str]]:
    """(alert id, evidence_error) of alerts whose evidence waits for disk space."""
    with db.session() as s:
        return [
            (a.id, str((a.payload or {}).get("evidence_error")))
            for a in s.scalars(select(AlertRow).where(AlertRow.evidence_status == "pending"))
            if (a.payload or {}).get("evidence_error")
        ]


def test_evidence_volume_full(tmp_path: Path, fault_row: FaultRow) -> None:
    reason = can_mount_tmpfs(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    lines = 20
    script = short_script(lines)
    media = script.make_media(tmp_path / "tones.mp4", video=False)
    data = tmp_path / "data"
    evidence = data / "evidence"
    with tmpfs_mount(evidence, "2m"):
        mon, db = make_monitor(data, script, [stream_cfg("room", str(media), realtime=True)])
        mon.start()
        try:
            done_before = 0
            for round_ in range(2):
                wait_for(
                    _at_least(lambda: _counts(db).get("done", 0), done_before + 2), 60, "evidence written"
                )
                before = _counts(db)
                kept = dict(_done_evidence(db))
                filled = fill_disk(evidence, f"filler{round_}.bin")
                fault_row.injected += 1
                full_at = recorded_until(db, "room")
                n_alerts = alert_count(db)
                # evidence of the next alert cannot be written: it waits, saying what and where
                wait_for(lambda: bool(_waiting(db)), 40, "evidence deferred for want of space")
                error = _waiting(db)[0][1]
                assert "no space left on device" in error and str(evidence.absolute()) in error, error
                wait_for(lambda: deferred_status(data, time.time()) is not None, 10, "the status file")
                (line,) = deferred_problems(deferred_status(data, time.time()))
                assert "waiting for disk space" in line and str(evidence.absolute()) in line
                # detection and alerting carry on; nothing stored is lost or failed
                wait_for(
                    _at_least(lambda: alert_count(db), n_alerts + 2),
                    40,
                    "alerts raised while the disk is full",
                )
                during = _counts(db)
                assert during.get("failed", 0) == 0, during
                assert during.get("done", 0) >= before.get("done", 0)
                now = dict(_done_evidence(db))
                assert all(now.get(a) == e for a, e in kept.items())  # earlier evidence kept, same folders
                files, problems = check_evidence_done(db, data)
                assert not problems, problems
                fault_row.notes.append(
                    f"full #{round_ + 1} at {full_at:.1f} s ({filled} bytes of filler): "
                    f"{alert_count(db) - n_alerts} alert(s) raised while full, "
                    f"{len(_waiting(db))} evidence waiting, {files} earlier evidence file(s) intact"
                )
                # space freed: the waiting evidence is written
                (evidence / f"filler{round_}.bin").unlink()
                freed = time.monotonic()
                wait_for(lambda: not _waiting(db), 90, "the waiting evidence to be written")
                fault_row.notes.append(
                    f"waiting evidence written {time.monotonic() - freed:.1f} s after freeing"
                )
                fault_row.survived += 1
                done_before = _counts(db).get("done", 0)
            wait_for(lambda: recorded_until(db, "room") >= script.duration_s - 1.5, 90, "the recording's end")
            wait_for(lambda: evidence_settled(db), 60, "analysis and evidence")
        finally:
            mon.stop()
        chk = check_alerts(db, script, "room")
        fault_row.lost, fault_row.duplicated = chk.lost, chk.duplicated
        files, problems = check_evidence(db, data)
        fault_row.notes.append(
            f"{chk.expected} labelled line(s), {chk.alerts} alert(s), {files} file(s) verified"
        )
        assert not chk.problems, chk.problems
        assert not problems, problems
        assert _counts(db) == {"done": chk.alerts}


def _done_evidence(db: Database) -> list[tuple[str, str]]:
    with db.session() as s:
        return [
            (a.id, a.evidence_dir or "")
            for a in s.scalars(select(AlertRow).where(AlertRow.evidence_status == "done"))
        ]


def check_evidence_done(db: Database, data: Path) -> tuple[int, list[str]]:
    """check_evidence over the alerts whose evidence is written (the others wait for space)."""
    files, problems = check_evidence(db, data)
    return files, [p for p in problems if not p.endswith("evidence pending")]
