"""Live frame analysis (app/live_video.py) in a real monitor: on-screen captions become alerts with evidence.

broadcast_0.mp4 (five captions, three of them violations) is recorded by real ffmpeg at full speed
(`realtime: false`) and read by the real RapidOCR and NudeNet models; speech is switched off with a
transcriber that hears nothing, so every alert here comes from the screen. The shipped rule packs and
price checks judge the captions, as in a scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from live_helpers import CORPUS
from sqlalchemy import select
from test_live_monitor import settled, wait_for

from alerts.evidence import sha256_file
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from asr.types import Utterance
from store.db import Database
from store.models import AlertRow, Broadcast, UtteranceRow

pytestmark = [pytest.mark.slow, pytest.mark.model]

OVERLAYS = json.loads((CORPUS / "broadcast_0.json").read_text(encoding="utf-8"))["overlays"]


class Deaf:
    """A transcriber that hears nothing: speech is out of this test."""

    def transcribe(
        self, audio: np.ndarray, *, offset_s: float = 0.0, prompt: str | None = None
    ) -> Iterator[Utterance]:
        return iter(())


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
                return b is not None and bool((b.meta or {}).get("video_complete")) and settled(db)

        wait_for(video_done, 240, "the video to be read and its alerts' evidence cut")
    finally:
        mon.stop()

    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.start_s)).all()
        captions = s.scalars(select(UtteranceRow).where(UtteranceRow.source == "screen")).all()
    src0 = float((b.meta or {}).get("source_start_s") or 0.0)
    assert b.meta["video_done_s"] == pytest.approx(b.duration_s, abs=2.5)

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
        folder = Path(a.evidence_dir or "")
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        names = {f["name"] for f in manifest["files"]}
        assert "snapshot.jpg" in names
        for f in manifest["files"]:
            assert sha256_file(folder / f["name"]) == f["sha256"]
