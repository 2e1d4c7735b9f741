"""Faults on the monitor side, with live HLS on 127.0.0.1 and the fake model: the monitor killed with
SIGKILL at random points and restarted, the database locked by another connection for 10 s, and a
webhook receiver answering 500s, garbage, slow replies and connection resets.

Each test injects its fault N times, then checks that no alert the recorded media allows was lost,
none was raised twice, every evidence file hashes to what was stored, and the monitor alerted after the
last fault; its counts go to the suite's summary table (conftest.py).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from fault_harness import (
    FaultRow,
    alert_count,
    alerts_after,
    check_alerts,
    check_evidence,
    evidence_settled,
    hls_server,
    make_monitor,
    more_alerts,
    procs_under,
    recorded_past,
    recorded_until,
    short_script,
    sqlite_exclusive_lock,
    stream_cfg,
    wait_for,
)
from live_helpers import ROOT, save_script
from sqlalchemy import func, select

from store.db import Database
from store.models import WebhookOutbox

pytestmark = pytest.mark.slow


def count_and_assert(db: Database, data: Path, script_lines: int, row: FaultRow, after_s: float) -> None:
    chk = check_alerts(db, short_script(script_lines), "room")
    row.lost += chk.lost
    row.duplicated += chk.duplicated
    row.notes.append(f"{chk.expected} labelled line(s) recorded whole, {chk.alerts} alert(s)")
    files, ev_problems = check_evidence(db, data)
    row.notes.append(f"evidence files verified: {files}")
    assert not chk.problems, chk.problems
    assert not ev_problems, ev_problems
    assert alerts_after(db, "room", after_s) > 0, f"no alert after the last fault ({after_s:.1f} s)"


def test_monitor_kill_9_at_random_points(tmp_path: Path, fault_row: FaultRow) -> None:
    # A monitor process killed 10 times: half at a random moment after it was started (loading,
    # resuming, or recording), half at a random moment after it recorded something new; each time a
    # new one is started on the same data. A 45 s playlist window covers every restart.
    seed = int(os.environ.get("LIVEWATCH_FAULT_SEED", "12"))
    rnd = random.Random(seed)
    lines = 20
    script = short_script(lines)
    data = tmp_path / "data"
    rec = data / "recordings"
    saved = save_script(script, tmp_path / "script.json")
    with hls_server(script, tmp_path, list_size=45) as server:
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(data),
                    "alerts": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
                    "video": {"enabled": False},
                    "streams": [stream_cfg("room", server.url)],
                }
            )
        )
        cmd = [sys.executable, str(ROOT / "tests" / "live_helpers.py"), "monitor", str(config), str(saved)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        db = Database.for_data_dir(data)
        kill_at = 0.0
        while_recording = 0
        for i in range(10):
            with (tmp_path / f"run{i}.log").open("w") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            if i % 2:
                before = recorded_until(db)
                wait_for(recorded_past(db, before), 40, "the restarted monitor recording")
            time.sleep(rnd.uniform(0.5, 4.0))  # the random point (the fault's timing, not a wait)
            if i and proc.poll() is None:
                fault_row.survived += 1  # the run after the previous kill started and resumed
            if recorded_until(db) > kill_at:
                while_recording += 1
            kill_at = max(kill_at, recorded_until(db))
            assert proc.poll() is None, f"monitor run {i} exited by itself: see run{i}.log"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            fault_row.injected += 1
            # its recorder's ffmpeg/streamlink die with it (PR_SET_PDEATHSIG)
            wait_for(lambda: not procs_under(rec, "ffmpeg"), 10, "the killed monitor's ffmpeg to exit")
        with (tmp_path / "final.log").open("w") as log:
            final = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: recorded_until(db) > kill_at, 60, "recording after the last kill")
            fault_row.survived += 1
            wait_for(lambda: server.finished, 120, "the end of the broadcast")
            wait_for(lambda: recorded_until(db) >= script.duration_s - 1.5, 30, "the recording's end")
            wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
        finally:
            final.send_signal(signal.SIGTERM)
            assert final.wait(60) == 0
    fault_row.notes.append(
        f"seed {seed} (LIVEWATCH_FAULT_SEED); {while_recording} kill(s) after the run had recorded, "
        f"{10 - while_recording} while it was starting or resuming"
    )
    count_and_assert(db, data, lines, fault_row, kill_at)


def test_database_locked_for_10_s(tmp_path: Path, fault_row: FaultRow) -> None:
    # Another connection holds SQLite's exclusive lock for 10 s, twice, while alerts are being raised:
    # the monitor's one writer waits on its busy timeout (30 s) and then commits everything queued.
    lines = 12
    script = short_script(lines)
    data = tmp_path / "data"
    with hls_server(script, tmp_path, list_size=20) as server:
        mon, db = make_monitor(data, script, [stream_cfg("room", server.url)])
        mon.start()
        try:
            released_at = 0.0
            for _ in range(2):
                n = alert_count(db)
                wait_for(more_alerts(db, n), 40, "an alert before locking")
                with sqlite_exclusive_lock(data / "livewatch.db"):
                    fault_row.injected += 1
                    time.sleep(10.0)  # the fault's duration
                released_at = recorded_until(db)
                n = alert_count(db)
                wait_for(more_alerts(db, n), 40, "an alert after the lock")
                fault_row.survived += 1
            wait_for(lambda: server.finished, 120, "the end of the broadcast")
            wait_for(lambda: recorded_until(db) >= script.duration_s - 1.5, 30, "the recording's end")
            wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")
            fault_row.notes.append(f"database writes that failed: {mon.writer.failures}")
            assert mon.writer.failures == 0
        finally:
            mon.stop()
    count_and_assert(db, data, lines, fault_row, released_at)


class BadReceiver:
    """A webhook endpoint on 127.0.0.1 that answers in turn: HTTP 500, bytes that are not HTTP, a 200
    too late for the client's timeout, a connection reset, and only then a proper 200."""

    MODES = ("500", "garbage", "slow", "reset", "ok")

    def __init__(self, slow_s: float) -> None:
        self.n = 0
        self.faults: dict[str, int] = {m: 0 for m in self.MODES if m != "ok"}
        self.accepted: list[str] = []  # delivery ids answered 200 in time
        self.lock = threading.Lock()
        rx = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                header, _, body = head.partition(b"\r\n\r\n")
                fields = dict(ln.split(b":", 1) for ln in header.split(b"\r\n")[1:] if b":" in ln)
                length = int(fields.get(b"Content-Length", b"0").strip() or 0)
                while len(body) < length:
                    body += self.request.recv(65536)
                delivery = fields.get(b"X-Livewatch-Delivery", b"?").strip().decode()
                with rx.lock:
                    mode = rx.MODES[rx.n % len(rx.MODES)]
                    rx.n += 1
                    if mode != "ok":
                        rx.faults[mode] += 1
                if mode == "500":
                    self.request.sendall(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"
                    )
                elif mode == "garbage":
                    self.request.sendall(b"\x00\xffnot http at all\r\n\r\n")
                elif mode == "slow":
                    time.sleep(slow_s)
                    try:
                        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    except OSError:
                        pass
                elif mode == "reset":
                    self.request.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.request.close()
                else:
                    with rx.lock:
                        rx.accepted.append(delivery)
                    self.request.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_malformed_webhook_responses(tmp_path: Path, fault_row: FaultRow) -> None:
    lines = 10
    script = short_script(lines)
    data = tmp_path / "data"
    rx = BadReceiver(slow_s=2.0)
    try:
        with hls_server(script, tmp_path, list_size=20) as server:
            hook = {
                "url": rx.url,
                "timeout_s": 1.0,
                "backoff_initial_s": 0.2,
                "backoff_max_s": 1.0,
                "max_attempts": 50,
            }
            mon, db = make_monitor(data, script, [stream_cfg("room", server.url)], webhooks=[hook])
            mon.start()
            try:
                wait_for(lambda: server.finished, 120, "the end of the broadcast")
                wait_for(lambda: recorded_until(db) >= script.duration_s - 1.5, 30, "the recording's end")
                wait_for(lambda: evidence_settled(db), 40, "analysis and evidence")

                def delivered() -> bool:
                    with db.session() as s:
                        return not s.scalar(
                            select(func.count(WebhookOutbox.id)).where(WebhookOutbox.delivered_ts.is_(None))
                        )

                wait_for(delivered, 60, "every alert delivered")
            finally:
                mon.stop()
    finally:
        rx.close()
    with db.session() as s:
        rows = s.scalars(select(WebhookOutbox)).all()
    fault_row.injected = sum(rx.faults.values())
    fault_row.notes.append(", ".join(f"{k}: {v}" for k, v in rx.faults.items()))
    accepted = {str(r.id) for r in rows}
    fault_row.survived = fault_row.injected if accepted <= set(rx.accepted) else 0
    dup = len(rx.accepted) - len(set(rx.accepted))
    fault_row.duplicated += dup
    fault_row.notes.append(f"{len(rows)} alert(s) delivered after {sum(r.attempts for r in rows)} attempt(s)")
    assert rows and accepted == set(rx.accepted), (accepted, rx.accepted)
    assert dup == 0
    assert fault_row.injected >= 4
    count_and_assert(db, data, lines, fault_row, 0.0)
