"""Writes legacy_create_all.sql: a database as livewatch made it before migrations (create_all).

The schema is `Base.metadata.create_all` of store/models.py at commit 52d27b4 (the baseline revision
0001); the rows are a small broadcast with an alert, its detection, evidence files, a reviewer's
decision, utterances, a media segment and a price claim. Run once at that commit; kept as SQL text so
the fixture is reviewable and never changes with the models:

    python tests/data/store/make_legacy_db.py
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from store.models import (
    AlertRow,
    Base,
    Broadcast,
    Decision,
    DetectionRow,
    EvidenceFileRow,
    MediaSegmentRow,
    PriceClaimRow,
    Stream,
    UtteranceRow,
)

OUT = Path(__file__).with_name("legacy_create_all.sql")
T0 = 1764000000.125  # 2025-11-24T16:00:00.125Z


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "livewatch.db"
        engine = create_engine(f"sqlite:///{path}")
        Base.metadata.create_all(engine)
        with Session(engine) as s, s.begin():
            s.add(Stream(id="room-1", url="https://live.example/room-1", name="一号直播间", created_ts=T0))
            s.add(
                Broadcast(
                    id="room-1-20251124T160000Z-ab12",
                    stream_id="room-1",
                    kind="live",
                    source="https://live.example/room-1",
                    status="ended",
                    rules_version="r1",
                    meta={"asr": "base", "notes": ["第一场"]},
                    started_ts=T0,
                    created_ts=T0,
                )
            )
            s.flush()
            s.add(
                MediaSegmentRow(
                    broadcast_id="room-1-20251124T160000Z-ab12",
                    seq=0,
                    path="seg_00000.ts",
                    start_s=0.0,
                    duration_s=4.0,
                    status="analyzed",
                    size=123456,
                    created_ts=T0,
                )
            )
            s.add(
                UtteranceRow(
                    broadcast_id="room-1-20251124T160000Z-ab12",
                    source="speech",
                    idx=0,
                    start_s=1.0,
                    end_s=3.5,
                    text="全网最低价",
                    raw_text="全網最低價",
                    words=[["全网", 1.0, 1.8, 0.9], ["最低价", 1.8, 3.5, 0.8]],
                    meta={},
                )
            )
            s.add(
                AlertRow(
                    id="0123456789abcdef0123",
                    broadcast_id="room-1-20251124T160000Z-ab12",
                    stream_id="room-1",
                    category="absolute_terms",
                    code="A1",
                    rule_id="abs.lowest",
                    severity="high",
                    source="speech",
                    start_s=1.0,
                    end_s=3.5,
                    start_ts=T0 + 1.0,
                    text="全网最低价",
                    context="家人们 全网最低价",
                    law="广告法第九条",
                    rules_version="r1",
                    evidence_dir="evidence/0123456789abcdef0123",
                    evidence_status="done",
                    payload={"alert_id": "0123456789abcdef0123", "text": "全网最低价", "score": 97.5},
                    created_ts=T0 + 5.0,
                )
            )
            s.flush()
            s.add(
                DetectionRow(
                    alert_id="0123456789abcdef0123",
                    broadcast_id="room-1-20251124T160000Z-ab12",
                    rule_id="abs.lowest",
                    category="absolute_terms",
                    code="A1",
                    severity="high",
                    source="speech",
                    start_s=1.0,
                    end_s=3.5,
                    matched="最低价",
                    text="全网最低价",
                    score=97.5,
                    mode="exact",
                    details={"utterance_index": 0},
                )
            )
            s.add(
                EvidenceFileRow(
                    alert_id="0123456789abcdef0123", name="clip.mp4", kind="clip", sha256="a" * 64, size=2048
                )
            )
            s.add(
                Decision(
                    alert_id="0123456789abcdef0123",
                    decision="confirmed",
                    note="属实",
                    reviewer="li",
                    created_ts=T0 + 60.0,
                )
            )
            s.add(
                PriceClaimRow(
                    broadcast_id="room-1-20251124T160000Z-ab12",
                    stream_id="room-1",
                    source="speech",
                    start_s=10.0,
                    end_s=12.0,
                    ts=T0 + 10.0,
                    text="原价999今天只要199",
                    product="面霜",
                    reference_price=999.0,
                    current_price=199.0,
                    conditions=[],
                    pressure=["最后一天"],
                )
            )
        engine.dispose()
        con = sqlite3.connect(path)
        lines = list(con.iterdump())
        con.close()
    header = "-- A livewatch database made by create_all before migrations; see make_legacy_db.py.\n"
    OUT.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines)} statements)")


if __name__ == "__main__":
    main()
