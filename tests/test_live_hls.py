"""Live HLS on 127.0.0.1 read through streamlink: drops, reconnects, gaps, kill -9 and restart.

A tone script (see live_helpers.ToneScript) is served as live HLS by `ffmpeg -re`; a fake transcriber
hears the tones, so these tests need no model and know exactly which line was said when. The
producer's clock equals the media file's clock (`-muxdelay 0`), and every broadcast stores the source
clock at its start, so each recorded stretch maps back onto the script.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from live_helpers import ROOT, HlsServer, LookupHolder, LookupRules, ToneScript, ToneTranscriber, save_script
from sqlalchemy import select

from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from store.db import Database
from store.models import AlertRow, Broadcast, BroadcastGap, UtteranceRow

pytestmark = pytest.mark.slow

IDS = ["d28", "d01", "d05", "d14", "d33", "d26", "d09", "d13", "d17", "d24", "d10", "d20", "d22", "d07"]
SCRIPT = ToneScript.from_corpus(IDS, period_s=5.0)


def recorded_ranges(db: Database) -> list[tuple[str, float, float, float]]:
    """(broadcast, source start, source end, source offset) for every broadcast with data."""
    with db.session() as s:
        out = []
        for b in s.scalars(select(Broadcast).order_by(Broadcast.started_ts)):
            src0 = float((b.meta or {}).get("source_start_s") or 0.0)
            out.append((b.id, src0, src0 + (b.duration_s or 0.0), src0))
        return out


def check_alerts_once_and_complete(db: Database) -> tuple[int, int]:
    """Every labelled line recorded whole has its alerts; no line x category alerted twice."""
    ranges = recorded_ranges(db)
    offset = {bid: src0 for bid, _, _, src0 in ranges}
    with db.session() as s:
        alerts = [
            (a.category, a.start_s + offset[a.broadcast_id], a.end_s + offset[a.broadcast_id])
            for a in s.scalars(select(AlertRow))
        ]
    expected = 0
    for line in SCRIPT.lines():
        hits = {
            c: [a for a in alerts if a[0] == c and a[1] < line.end_s + 0.5 and a[2] > line.start_s - 0.5]
            for c in line.labels
        }
        whole = any(lo <= line.start_s - 0.2 and line.end_s + 0.2 <= hi for _, lo, hi, _ in ranges)
        for c, found in hits.items():
            assert len(found) <= 1, f"{line.text} {c} alerted {len(found)} times"
            if whole:
                expected += 1
                assert found, f"{line.text} ({c}) was recorded whole but not alerted"
    return expected, len(alerts)


def check_utterances_once(db: Database) -> None:
    with db.session() as s:
        rows = s.scalars(select(UtteranceRow).order_by(UtteranceRow.broadcast_id, UtteranceRow.start_s)).all()
    assert rows and all(r.analyzed for r in rows)
    for a, b in itertools.pairwise(rows):
        if a.broadcast_id == b.broadcast_id:
            assert b.start_s >= a.end_s - 0.05, f"overlapping utterances {a.text} / {b.text}"


def test_cutting_the_server_yields_a_reconnect_a_stored_gap_and_continued_alerts(tmp_path: Path) -> None:
    media = SCRIPT.make_media(tmp_path / "tones.mp4")
    with HlsServer(media, tmp_path / "hls") as server:
        cfg = MonitorConfig.model_validate(
            {
                "data_dir": str(tmp_path / "data"),
                "alerts": {"pre_roll_s": 2.0, "post_roll_s": 2.0},
                "streams": [
                    {
                        "id": "room",
                        "url": server.url,
                        "stall_timeout_s": 6,
                        "hls_live_edge": 1,
                        "reconnect": {"initial_s": 1, "max_s": 2},
                    }
                ],
            }
        )
        db = Database.for_data_dir(tmp_path / "data")
        mon = Monitor(
            cfg,
            db,
            tmp_path / "data",
            transcriber=ToneTranscriber(SCRIPT),
            rule_holder=lambda dirs: LookupHolder(LookupRules(SCRIPT.lines())),
        )
        mon.start()
        states = []
        try:
            time.sleep(22)
            server.cut()
            t_cut = time.time()
            while time.time() - t_cut < 10:
                states.append(mon.status()["streams"]["room"]["state"])
                time.sleep(0.5)
            server.restore()
            while not server.finished:
                time.sleep(0.5)
            time.sleep(3)
        finally:
            mon.stop()
    assert "reconnecting" in states or "offline" in states
    ranges = recorded_ranges(db)
    assert len(ranges) >= 2
    with db.session() as s:
        first, second = s.scalars(select(Broadcast).order_by(Broadcast.started_ts)).all()[:2]
        gap = s.scalars(select(BroadcastGap).where(BroadcastGap.start_ts == first.ended_ts)).one()
        assert gap.end_ts is not None and gap.end_ts >= second.started_ts - 0.01
        assert gap.end_ts - gap.start_ts >= 5.0 and "stalled" in gap.reason
        assert s.scalars(select(AlertRow).where(AlertRow.broadcast_id == second.id)).all(), "no alerts after"
    assert ranges[1][1] > ranges[0][2]  # what the cut lost is a gap on the source's clock too
    expected, _ = check_alerts_once_and_complete(db)
    assert expected >= 6
    check_utterances_once(db)


def test_kill_9_mid_broadcast_then_restart_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    media = SCRIPT.make_media(tmp_path / "tones.mp4")
    data = tmp_path / "data"
    script = save_script(SCRIPT, tmp_path / "script.json")
    with HlsServer(media, tmp_path / "hls") as server:
        config = tmp_path / "monitor.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(data),
                    "alerts": {"pre_roll_s": 2.0, "post_roll_s": 4.0},
                    "streams": [{"id": "room", "url": server.url, "stall_timeout_s": 6, "hls_live_edge": 1}],
                }
            )
        )
        cmd = [sys.executable, str(ROOT / "tests" / "live_helpers.py"), "monitor", str(config), str(script)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log1 = (tmp_path / "run1.log").open("w")
        first = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, env=env)
        time.sleep(27)  # mid-line 5, with alerts raised and some evidence still waiting for its post-roll
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        folders = list((data / "recordings" / "room").iterdir())
        sizes = {p: sum(f.stat().st_size for f in p.iterdir()) for p in folders}
        time.sleep(1.5)
        assert sizes == {p: sum(f.stat().st_size for f in p.iterdir()) for p in folders}, (
            "orphans still record"
        )
        log2 = (tmp_path / "run2.log").open("w")
        second = subprocess.Popen(cmd, stdout=log2, stderr=subprocess.STDOUT, env=env)
        try:
            while not server.finished:
                time.sleep(0.5)
            time.sleep(8)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    db = Database.for_data_dir(data)
    with db.session() as s:
        bs = s.scalars(select(Broadcast).order_by(Broadcast.started_ts)).all()
        assert bs[0].meta["end_reason"] == "monitor stopped unexpectedly" and bs[0].status == "done"
        assert len(bs) >= 2
        assert s.scalars(select(AlertRow).where(AlertRow.evidence_status != "done")).all() == []
        gaps = s.scalars(select(BroadcastGap).order_by(BroadcastGap.start_ts)).all()
        assert gaps[0].start_ts == bs[0].ended_ts and gaps[0].end_ts is not None
    expected, n_alerts = check_alerts_once_and_complete(db)
    assert expected >= 8 and n_alerts >= expected
    check_utterances_once(db)
