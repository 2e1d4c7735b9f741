"""Faults on the recording side, with live HLS on 127.0.0.1 read through streamlink and the fake model:
ffmpeg killed mid-segment, the HLS server cut for 5-20 s, the recordings volume full.

Each test injects its fault N times into a running monitor, then checks that no alert the recorded
media allows was lost, none was raised twice, every evidence file hashes to what was stored, and the
monitor alerted after the last fault; its counts go to the suite's summary table (conftest.py).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fault_harness import (
    FaultRow,
    alerts_after,
    check_alerts,
    check_evidence,
    evidence_settled,
    hls_server,
    make_monitor,
    procs_under,
    ranges,
    recorded_past,
    recorded_until,
    short_script,
    stream_cfg,
    wait_for,
)

from store.db import Database

pytestmark = pytest.mark.slow


def finish_and_check(
    db: Database, data: Path, script_lines: int, row: FaultRow, streams: list[str], after_s: float
) -> None:
    """Count, then assert: alerts lost / duplicated, evidence, alerts after the last fault."""
    from fault_harness import short_script as _s

    script = _s(script_lines)
    problems: list[str] = []
    for sid in streams:
        chk = check_alerts(db, script, sid)
        row.lost += chk.lost
        row.duplicated += chk.duplicated
        problems += chk.problems
        row.notes.append(f"{sid}: {chk.expected} labelled line(s) recorded whole, {chk.alerts} alert(s)")
        if alerts_after(db, sid, after_s) == 0:
            problems.append(f"{sid}: no alert after the last fault ({after_s:.1f} s)")
    files, ev_problems = check_evidence(db, data)
    row.notes.append(f"evidence files verified: {files}")
    assert not problems, problems
    assert not ev_problems, ev_problems


def holes(db: Database, sid: str) -> float:
    """Seconds of the source not recorded between the stream's broadcasts."""
    rs = sorted(ranges(db, sid), key=lambda r: r[1])
    return sum(max(0.0, b[1] - a[2]) for a, b in itertools.pairwise(rs))


def newest_file(folder: Path) -> Path | None:
    files = sorted(folder.glob("*/seg_*.ts"), key=lambda p: (p.parent.stat().st_mtime, p.name))
    return files[-1] if files else None


def test_ffmpeg_killed_mid_segment(tmp_path: Path, fault_row: FaultRow) -> None:
    lines = 22
    script = short_script(lines)
    data = tmp_path / "data"
    rec = data / "recordings" / "room"
    with hls_server(script, tmp_path, list_size=20) as server:
        mon, db = make_monitor(data, script, [stream_cfg("room", server.url)])
        mon.start()
        try:
            last_kill_at = 0.0
            for _ in range(10):
                wait_for(recorded_past(db, last_kill_at + 0.5, "room"), 30, "recording after a kill")
                if fault_row.injected:
                    fault_row.survived += 1

                # mid-segment: the newest file of the running ffmpeg has bytes and is still growing
                def writing() -> bool:
                    f = newest_file(rec)
                    return bool(procs_under(rec, "ffmpeg")) and f is not None and f.stat().st_size > 0

                wait_for(writing, 20, "ffmpeg writing a file")
                pids = procs_under(rec, "ffmpeg")
                last_kill_at = recorded_until(db, "room")
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                fault_row.injected += 1
            wait_for(
                lambda: recorded_until(db, "room") > last_kill_at + 0.5, 30, "recording after the last kill"
            )
            fault_row.survived += 1
            wait_for(lambda: server.finished, 120, "the end of the broadcast")
            wait_for(lambda: recorded_until(db, "room") >= script.duration_s - 1.5, 30, "the recording's end")
            wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
        finally:
            mon.stop()
    fault_row.notes.append(f"media not recorded across the reconnects: {holes(db, 'room'):.1f} s")
    finish_and_check(db, data, lines, fault_row, ["room"], last_kill_at)


CUTS = [(5.0, 20.0), (7.0, 19.0), (9.0, 18.0), (11.0, 16.0), (13.0, 14.0)]


def test_hls_server_cut_5_to_20_s(tmp_path: Path, fault_row: FaultRow) -> None:
    # Five rooms at once, each cut twice (10 cuts of 5-20 s), against a 12 s playlist window of 1 s
    # segments: cuts longer than the window lose what fell out of it (not counted as lost alerts: the
    # checks count lines recorded whole), the rest must lose nothing.
    lines = 15
    script = short_script(lines)
    data = tmp_path / "data"
    servers = []
    with_servers = [hls_server(script, tmp_path / f"s{i}", list_size=12) for i in range(len(CUTS))]
    try:
        for cm in with_servers:
            servers.append(cm.__enter__())
        ids = [f"room{i}" for i in range(len(CUTS))]
        mon, db = make_monitor(
            data, script, [stream_cfg(sid, s.url) for sid, s in zip(ids, servers, strict=True)]
        )
        mon.start()
        errors: list[BaseException] = []
        last_restore: dict[str, float] = {}
        lock = threading.Lock()

        def scenario(sid: str, server: object, cuts: tuple[float, float]) -> None:
            try:
                mark = 0.0
                for d in cuts:
                    wait_for(recorded_past(db, mark + 2.0, sid), 60, f"{sid} recording")
                    server.cut()  # type: ignore[attr-defined]
                    with lock:
                        fault_row.injected += 1
                    time.sleep(d)  # the outage itself, not a wait for state
                    server.restore()  # type: ignore[attr-defined]
                    mark = recorded_until(db, sid)
                    last_restore[sid] = mark
                wait_for(lambda: recorded_until(db, sid) >= mark + 2.0, 60, f"{sid} recording after its cuts")
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [
            threading.Thread(target=scenario, args=(sid, s, c), daemon=True)
            for sid, s, c in zip(ids, servers, CUTS, strict=True)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            assert not errors, errors
            for sid, s in zip(ids, servers, strict=True):
                wait_for(lambda: all(s.finished for s in servers), 120, "the end of the broadcasts")
                wait_for(recorded_past(db, script.duration_s - 1.5, sid), 30, f"{sid} end")
            wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
        finally:
            mon.stop()
    finally:
        for cm in with_servers:
            cm.__exit__(None, None, None)
    # a cut survived when its room recorded again after it (checked per scenario above)
    fault_row.survived = fault_row.injected if not errors else 0
    for sid, (c1, c2) in zip(ids, CUTS, strict=True):
        fault_row.notes.append(
            f"{sid}: cuts {c1:.0f} s + {c2:.0f} s, media not recorded {holes(db, sid):.1f} s"
        )
    finish_and_check(db, data, lines, fault_row, ids, min(last_restore.values()))


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if ok.returncode != 0:
        return False
    subprocess.run(["umount", str(where)], capture_output=True)
    return True


def test_recordings_volume_full(tmp_path: Path, fault_row: FaultRow) -> None:
    # A real full disk: the recordings folder is a small tmpfs mount, filled by the recording itself,
    # then grown again (an operator freeing space). Needs root and mount(8); skipped elsewhere.
    data = tmp_path / "data"
    rec_root = data / "recordings"
    if not _can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("needs root and a tmpfs mount for a real full disk")
    lines = 14
    script = short_script(lines)
    rec_root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(rec_root)], check=True)
    try:
        with hls_server(script, tmp_path, list_size=30) as server:
            mon, db = make_monitor(data, script, [stream_cfg("room", server.url)])
            mon.start()
            try:
                mark = 0.0
                for _ in range(2):
                    wait_for(lambda: shutil.disk_usage(rec_root).free < 8192, 60, "the volume to fill up")
                    fault_row.injected += 1
                    full_at = recorded_until(db, "room")
                    # grow the volume by what a few seconds of recording need; the next fill is the next fault
                    used = shutil.disk_usage(rec_root).used
                    wait_for(lambda: mon.status()["streams"]["room"]["state"] != "recording", 20, "the drop")
                    subprocess.run(
                        ["mount", "-o", f"remount,size={used + 200 * 1024}", str(rec_root)], check=True
                    )
                    wait_for(recorded_past(db, full_at + 1.0, "room"), 30, "recording again")
                    fault_row.survived += 1
                    mark = recorded_until(db, "room")
                subprocess.run(["mount", "-o", "remount,size=64m", str(rec_root)], check=True)
                wait_for(lambda: server.finished, 120, "the end of the broadcast")
                wait_for(
                    lambda: recorded_until(db, "room") >= script.duration_s - 1.5, 30, "the recording's end"
                )
                wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
            finally:
                mon.stop()
        fault_row.notes.append(f"media not recorded while full: {holes(db, 'room'):.1f} s (tmpfs mount)")
        finish_and_check(db, data, lines, fault_row, ["room"], mark)
    finally:
        subprocess.run(["umount", "-l", str(rec_root)], capture_output=True)
