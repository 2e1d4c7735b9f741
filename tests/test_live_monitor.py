"""The monitor end to end with real ffmpeg recording and a fake that hears tones (no model).

The source is a local file read at full speed (`realtime: false`): ASR starts behind and catches up,
which exercises the backlog path; the live-latency path is covered by tests/test_live_hls.py.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from live_helpers import LookupHolder, LookupRules, Receiver, ToneScript, ToneTranscriber
from sqlalchemy import select

from alerts.evidence import sha256_file
from alerts.webhook import sign
from app.monitor import Monitor
from app.monitor_config import MonitorConfig
from ingest.ffmpeg import probe
from review.monitor_status import read_status, stream_statuses
from store.db import Database
from store.models import (
    AlertRow,
    Broadcast,
    BroadcastGap,
    DetectionRow,
    MediaSegmentRow,
    PriceClaimRow,
    UtteranceRow,
    WebhookOutbox,
)
from store.prices import import_reference_prices

SCRIPT = ToneScript.from_corpus(
    ["d28", "d01", "d05", "d14", "d33", "d26"], period_s=4.0, lead_s=0.8, length_s=2.5
)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def settled(db: Database) -> bool:
    with db.session() as s:
        b = s.scalars(select(Broadcast)).all()
        pending = s.scalars(select(AlertRow).where(AlertRow.evidence_status == "pending")).all()
        undelivered = s.scalars(select(WebhookOutbox).where(WebhookOutbox.delivered_ts.is_(None))).all()
        return bool(b) and all(x.status == "done" for x in b) and not pending and not undelivered


@pytest.fixture(scope="module")
def tone_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return SCRIPT.make_media(tmp_path_factory.mktemp("media") / "tones.mp4")


def test_a_monitored_stream_yields_alerts_evidence_and_webhooks(tmp_path: Path, tone_media: Path) -> None:
    rx = Receiver([503])  # the first POST fails: the outbox retries
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "alerts": {"pre_roll_s": 2.0, "post_roll_s": 2.0},
            "webhooks": [{"url": rx.url, "secret": "k", "backoff_initial_s": 0.5}],
            "streams": [{"id": "room", "url": str(tone_media), "realtime": False, "segment_s": 1}],
        }
    )
    db = Database.for_data_dir(tmp_path)
    mon = Monitor(
        cfg,
        db,
        tmp_path,
        transcriber=ToneTranscriber(SCRIPT),
        rule_holder=lambda dirs: LookupHolder(LookupRules(SCRIPT.lines())),
    )
    mon.start()
    try:
        wait_for(lambda: settled(db), 90, "the broadcast to be processed")
        # the monitor rewrites its status file every second
        wait_for(lambda: stream_statuses(db, tmp_path, time.time())[0], 5, "the status file")
        running, rows = stream_statuses(db, tmp_path, time.time())
        assert running and [(r.stream_id, r.alerts_today) for r in rows] == [("room", 4)]
    finally:
        mon.stop()
        rx.close()
    assert read_status(tmp_path)["running"] is False  # type: ignore[index]

    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        assert (
            b.kind == "live"
            and b.status == "done"
            and b.duration_s == pytest.approx(SCRIPT.duration_s, abs=0.5)
        )
        utts = s.scalars(select(UtteranceRow).order_by(UtteranceRow.idx)).all()
        assert [u.text for u in utts] == ["".join(c for c in t if c.isalnum()) for t in SCRIPT.texts]
        assert all(u.analyzed for u in utts)
        segs = s.scalars(select(MediaSegmentRow).order_by(MediaSegmentRow.seq)).all()
        assert {x.status for x in segs} == {"analyzed"}
        for a, nxt in itertools.pairwise(segs):  # contiguous: no hidden hole
            assert nxt.start_s == pytest.approx(a.start_s + a.duration_s, abs=0.05)
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.start_s, AlertRow.category)).all()
        gaps = s.scalars(select(BroadcastGap)).all()
    lines = {ln.text: ln for ln in SCRIPT.lines()}
    expected = sorted((lines[t].start_s, c) for t in SCRIPT.texts for c in lines[t].labels)
    assert [(round(a.start_s), a.category) for a in alerts] == [(round(s0), c) for s0, c in expected]
    assert [g.reason for g in gaps] == ["source ended"]

    for a in alerts:
        assert a.evidence_status == "done" and a.start_ts == pytest.approx(b.started_ts + a.start_s)
        folder = tmp_path / (a.evidence_dir or "")  # stored relative to the data directory
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for f in manifest["files"]:
            assert sha256_file(folder / f["name"]) == f["sha256"]
        clip = probe(folder / manifest["clip"]["file"])
        assert clip.has_audio and clip.has_video
        assert clip.duration_s >= (a.end_s - a.start_s) + 2.0  # at least the moment and the post-roll
        assert manifest["clip"]["start_s"] <= a.start_s - 1.0  # pre-roll (keyframes may add more)
        covered = [
            x for x in segs if x.start_s < a.end_s + 2.0 and x.start_s + x.duration_s > a.start_s - 2.0
        ]
        assert covered and all(x.pinned for x in covered)
        assert {m["path"] for m in manifest["media"]} == {x.path for x in covered}

    posted = [json.loads(body)["alert"]["alert_id"] for _, body in rx.requests]
    assert sorted(set(posted)) == sorted(a.id for a in alerts) and len(posted) == len(alerts) + 1
    for headers, body in rx.requests:
        assert headers["x-livewatch-signature"] == sign(b"k", headers["x-livewatch-timestamp"], body)
    # a hook is posted once the clip is cut, and carries the hashes the store holds
    stored = {a.id: a.payload["evidence"] for a in alerts}
    for _, body in rx.requests:
        alert = json.loads(body)["alert"]
        assert alert["evidence"] and alert["evidence"] == stored[alert["alert_id"]]


def test_an_offline_source_is_retried_and_leaves_no_broadcast(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "streams": [
                {
                    "id": "gone",
                    "url": "http://127.0.0.1:9/live.flv",
                    "reconnect": {"initial_s": 0.2, "max_s": 0.4},
                }
            ],
        }
    )
    db = Database.for_data_dir(tmp_path)
    mon = Monitor(
        cfg,
        db,
        tmp_path,
        transcriber=ToneTranscriber(SCRIPT),
        rule_holder=lambda dirs: LookupHolder(LookupRules([])),
    )
    mon.start()
    try:
        wait_for(lambda: mon.status()["streams"]["gone"]["state"] == "offline", 20, "offline state")
        time.sleep(2.0)
        info = mon.status()["streams"]["gone"]
    finally:
        mon.stop()
    assert info["state"] in ("offline", "connecting") and info["broadcast_id"] is None
    with db.session() as s:
        assert s.scalars(select(Broadcast)).all() == []
    assert not any((tmp_path / "recordings" / "gone").glob("*"))  # failed attempts leave no folders


@pytest.mark.slow
def test_a_growing_asr_lag_is_shown_and_logged_loudly(
    tmp_path: Path, tone_media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "live_asr": {"lag_warn_s": 3.0, "min_step_s": 0.5},
            "streams": [{"id": "room", "url": str(tone_media)}],  # replayed at its own speed, as if live
        }
    )
    db = Database.for_data_dir(tmp_path)
    slow = ToneTranscriber(SCRIPT, delay_s=2.5)  # a machine that cannot keep up with the stream
    mon = Monitor(
        cfg,
        db,
        tmp_path,
        transcriber=slow,
        rule_holder=lambda dirs: LookupHolder(LookupRules(SCRIPT.lines())),
    )
    seen: list[dict[str, object]] = []
    mon.start()
    try:
        deadline = time.time() + SCRIPT.duration_s
        while time.time() < deadline and not any(s["lagging"] for s in seen):
            seen.append(mon.status()["streams"]["room"])
            time.sleep(0.5)
    finally:
        mon.stop()
    lagging = [s for s in seen if s["lagging"]]
    assert lagging
    # The flag is raised by the housekeeping's measurement, which the status keeps as max_asr_lag_s;
    # asr_lag_s is measured again when the status is read, maybe just after a pass caught up a little
    # (under load that read 2.88 s), so it only has to show the stream still behind: the flag clears
    # below half the warn.
    assert float(lagging[0]["max_asr_lag_s"]) >= 3.0  # type: ignore[arg-type]
    assert float(lagging[0]["asr_lag_s"]) > 3.0 / 2  # type: ignore[arg-type]
    assert any("ASR LAG: stream room" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


PRICE_SCRIPT = ToneScript.from_corpus(["d28", "d02", "d05"], period_s=4.0, lead_s=0.8, length_s=2.5)


def test_live_price_claims_are_checked_against_known_prices_stored_and_linked(tmp_path: Path) -> None:
    # 这个精华液原价九百九十九元,今天直播间只要一百九十九元 — while an imported price says 精华液 sold at 299
    media = PRICE_SCRIPT.make_media(tmp_path / "prices.mp4")
    known = tmp_path / "known.csv"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    known.write_text(f"product,price,date\n精华液,299,{yesterday}\n", encoding="utf-8")
    db = Database.for_data_dir(tmp_path)
    assert import_reference_prices(db, known) == (1, 0)
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "alerts": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
            "streams": [{"id": "room", "url": str(media), "realtime": False, "segment_s": 1}],
        }
    )
    # no keyword rules at all: whatever alerts comes from the price checks
    mon = Monitor(
        cfg,
        db,
        tmp_path,
        transcriber=ToneTranscriber(PRICE_SCRIPT),
        rule_holder=lambda dirs: LookupHolder(LookupRules([])),
    )
    mon.start()
    try:
        wait_for(lambda: settled(db), 90, "the broadcast to be processed")
    finally:
        mon.stop()
    line = PRICE_SCRIPT.lines()[1]
    with db.session() as s:
        (b,) = s.scalars(select(Broadcast)).all()
        (alert,) = s.scalars(select(AlertRow)).all()
        rules = {d.rule_id for d in s.scalars(select(DetectionRow).where(DetectionRow.alert_id == alert.id))}
        claims = s.scalars(select(PriceClaimRow)).all()
    assert alert.category == "price_fraud" and alert.stream_id == "room"
    assert line.start_s - 0.1 <= alert.start_s < alert.end_s <= line.end_s + 0.1  # the claim within its line
    assert "price.reference_above_known_price" in rules
    assert alert.evidence_status == "done"
    (claim,) = claims
    assert (claim.reference_price, claim.current_price, claim.product) == (999.0, 199.0, "精华液")
    assert claim.broadcast_id == b.id and claim.stream_id == "room" and claim.alert_id == alert.id
    assert claim.ts == pytest.approx(b.started_ts + claim.start_s)
