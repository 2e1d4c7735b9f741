"""Live frame analysis (app/live_video.py) in a real monitor: on-screen captions become alerts with evidence.

broadcast_0.mp4 (five captions, three of them violations) is recorded by real ffmpeg at full speed
(`realtime: false`) and read by the real RapidOCR and NudeNet models; speech is switched off with a
transcriber that hears nothing, so every alert here comes from the screen. The shipped rule packs and
price checks judge the captions, as in a scan.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from live_helpers import CORPUS, Deaf
from sqlalchemy import select
from test_live_monitor import settled, wait_for

from alerts.evidence import sha256_file
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from store.db import Database
from store.models import AlertRow, Broadcast, UtteranceRow

pytestmark = [pytest.mark.slow, pytest.mark.model]

OVERLAYS = json.loads((CORPUS / "broadcast_0.json").read_text(encoding="utf-8"))["overlays"]


def test_captions_on_screen_raise_alerts_live_with_evidence(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "alerts": {"pre_roll_s": 2.0, "post_roll_s": 2.0},
            "streams": [
                {
                    "id": "room",
                    "url": str(CORPUS / "broadcast_0.mp4"),
                    "realtime": False,
                    "record_video": True,
                }
            ],
        }
    )
    db = Database.for_data_dir(tmp_path)
    mon = Monitor(cfg, db, tmp_path, transcriber=Deaf())
    mon.start()
    try:

        def video_done() -> bool:
            with db.session() as s:
                b = s.scalars(select(Broadcast)).first()
                return b is not None and bool(b.video_complete) and settled(db)

        wait_for(video_done, 240, "the video to be read and its alerts' evidence cut")
    finally:
        mon.stop()

    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.start_s)).all()
        captions = s.scalars(select(UtteranceRow).where(UtteranceRow.source == "screen")).all()
    src0 = float(b.source_start_s or 0.0)
    assert b.video_done_s == pytest.approx(b.duration_s, abs=2.5)

    # every caption read once, at its labelled time, all analysed
    texts = {c.text for c in captions}
    for ov in OVERLAYS:
        norm = ov["text"].replace(" ", "")
        hit = [c for c in captions if norm[:4] in c.text.replace(" ", "")]
        assert hit, f"caption {ov['text']!r} not read; read: {sorted(texts)}"
        assert abs(hit[0].start_s + src0 - ov["start_s"]) <= 2.5, (hit[0].start_s, ov)
    assert all(c.analyzed for c in captions)

    # alerts: the labelled captions, nothing else, all from the screen
    assert alerts and all(a.source == "screen" for a in alerts)
    for ov in OVERLAYS:
        for cat in (c for c in ov["labels"] if c != "clean"):
            assert any(
                a.category == cat
                and a.start_s + src0 <= ov["end_s"] + 2
                and a.end_s + src0 >= ov["start_s"] - 2
                for a in alerts
            ), f"{ov['text']} {cat} not alerted: {[(a.category, a.start_s, a.text) for a in alerts]}"
    unlabelled = [
        a
        for a in alerts
        if not any(
            a.category in ov["labels"]
            and a.start_s + src0 <= ov["end_s"] + 2
            and a.end_s + src0 >= ov["start_s"] - 2
            for ov in OVERLAYS
        )
    ]
    assert not unlabelled, [(a.category, a.rule_id, a.text) for a in unlabelled]

    for a in alerts:  # each with a hashed clip and a snapshot
        assert a.evidence_status == "done", a.payload
        folder = tmp_path / (a.evidence_dir or "")  # stored relative to the data directory
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        names = {f["name"] for f in manifest["files"]}
        assert "snapshot.jpg" in names
        for f in manifest["files"]:
            assert sha256_file(folder / f["name"]) == f["sha256"]


def _labelled(alerts: list[AlertRow], src0: float) -> tuple[dict[tuple[str, str], int], list[AlertRow]]:
    """How many alerts each (labelled caption, category) got, and the alerts no label explains."""
    counts: dict[tuple[str, str], int] = {}
    unexplained = []
    for a in alerts:
        lo, hi = a.start_s + src0, a.end_s + src0
        keys = [
            (ov["text"], a.category)
            for ov in OVERLAYS
            if a.category in ov["labels"] and lo <= ov["end_s"] + 2 and hi >= ov["start_s"] - 2
        ]
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        if not keys:
            unexplained.append(a)
    return counts, unexplained


def test_kill_9_mid_video_then_restart_reads_the_rest_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stream = {"id": "room", "url": str(CORPUS / "broadcast_0.mp4"), "realtime": False, "record_video": True}
    base = {
        "data_dir": str(data),
        "alerts": {"pre_roll_s": 2.0, "post_roll_s": 2.0},
        "video": {"frames": {"interval_s": 0.5}},  # four times the frames: the kill lands mid-video
    }
    first_cfg, second_cfg = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first_cfg.write_text(yaml.safe_dump({**base, "streams": [stream]}), encoding="utf-8")
    # the restart only finishes what was recorded: the file is not recorded a second time
    second_cfg.write_text(
        yaml.safe_dump({**base, "streams": [{**stream, "enabled": False}]}), encoding="utf-8"
    )
    helper = str(Path(__file__).resolve().parent / "live_helpers.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    db = Database.for_data_dir(data)

    def video_done_s() -> float:
        with db.session() as s:
            b = s.scalars(select(Broadcast)).first()
            return float(b.video_done_s or 0.0) if b is not None else 0.0

    with (tmp_path / "run1.log").open("w") as log:
        first = subprocess.Popen(
            [sys.executable, helper, "video-monitor", str(first_cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_for(lambda: video_done_s() >= 56.0, 120, "half of the video to be read")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    done_at_kill = video_done_s()
    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        before = {a.id for a in s.scalars(select(AlertRow))}
    assert 56.0 <= done_at_kill < (b.duration_s or 124.0) - 20, "the kill did not land mid-video"
    assert b.status != "done" and not b.video_complete
    assert before, "no alert before the kill: the first half holds two labelled captions"

    with (tmp_path / "run2.log").open("w") as log:
        second = subprocess.Popen(
            [sys.executable, helper, "video-monitor", str(second_cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_for(lambda: settled(db), 120, "the rest of the video to be read and its evidence cut")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, (tmp_path / "run2.log").read_text()[-3000:]

    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.start_s)).all()
        captions = s.scalars(select(UtteranceRow).where(UtteranceRow.source == "screen")).all()
    assert b.status == "done" and b.video_complete
    assert len({c.idx for c in captions}) == len(captions)  # caption numbers carried on, none reused
    src0 = float(b.source_start_s or 0.0)
    for ov in OVERLAYS:  # each caption stored once, from its first appearance, though the kill cut it
        norm = ov["text"].replace(" ", "")
        rows = [c for c in captions if norm[:4] in c.text.replace(" ", "")]
        assert len(rows) == 1, (ov["text"], [(c.text, c.start_s) for c in rows])
        assert abs(rows[0].start_s + src0 - ov["start_s"]) <= 2.5, (rows[0].start_s, ov)
    counts, unexplained = _labelled(alerts, src0)
    expected = {(ov["text"], c) for ov in OVERLAYS for c in ov["labels"] if c != "clean"}
    assert set(counts) == expected, counts
    assert all(n == 1 for n in counts.values()), f"a caption alerted twice: {counts}"
    assert not unexplained, [(a.category, a.text) for a in unexplained]
    assert {a.id for a in alerts} >= before and all(a.evidence_status == "done" for a in alerts)
