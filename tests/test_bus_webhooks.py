"""Webhooks on the bus: the ingest worker that cuts an alert's evidence delivers its webhooks.

On a real nats-server, with `livewatch worker ingest` recording live HLS served on 127.0.0.1 and
`livewatch worker analyze` raising the alert from transcript batches published for the recorded
broadcast (the stand-in for the ASR worker, as `livewatch bus publish` does), and real HTTP receivers on
127.0.0.1:

- one alert gives exactly one signed POST per configured hook, sent once its evidence is cut: the
  payload names the clip and its SHA-256, which is the file's on disk, and the clip plays;
- the ingest worker killed with SIGKILL while its POST is in flight (the receiver has the request, the
  worker never records the answer): the worker that takes the stream over adopts the broadcast and
  delivers the row again with the same delivery id; the store marks it delivered once.

Without a bus: which alerts a worker delivers (`IngestRunner.hook_scope`). Waits on state with
deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_helpers import CORPUS, HlsServer
from sqlalchemy import select
from test_bus_ingest import (
    broadcasts,
    cut_media,
    ingest_config,
    recorded_s,
    start_worker,
    stop_workers,
    wait_for,
)

from alerts.evidence import sha256_file
from alerts.webhook import sign
from app.bus_analyze import connect, ensure_transcripts_stream
from app.bus_config import BusSection
from app.bus_ingest import IngestRunner
from app.bus_publish import _publish, _store_batch
from app.bus_server import EmbeddedNats
from app.bus_wire import TranscriptMessage, transcript_subject
from app.monitor_config import MonitorConfig
from app.webhooks import enqueue
from asr.types import TranscriptBatch, Utterance
from ingest.ffmpeg import probe
from store.db import Database
from store.live import LiveStore
from store.models import AlertRow, Broadcast, WebhookOutbox
from store.paths import resolve_stored

SECRET = "hook-secret"
FLAGGED = "本活动最终解释权归开发商"  # consumer_rights: a should_flag line of configs/rules


class HookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that records each POST as it arrives; with `hold_first`, the
    first POST is held unanswered until `release()` (a sender killed meanwhile never sees the 2xx)."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.release_event = threading.Event()
        if not hold_first:
            self.release_event.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    first = not receiver.requests
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if first:
                    receiver.release_event.wait(120)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender is gone
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def release(self) -> None:
        self.release_event.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


def _config(tmp_path: Path, data: Path, bus_url: str, hls_url: str, hooks: list[HookReceiver]) -> Path:
    return ingest_config(
        tmp_path / "workers.yaml",
        data,
        bus_url,
        {"room-0": hls_url},
        video={"enabled": False},
        alerts={"pre_roll_s": 1.0, "post_roll_s": 2.0},
        webhooks=[{"url": h.url, "secret": SECRET, "backoff_initial_s": 0.5} for h in hooks],
    )


async def _publish_lines(bus_url: str, db: Database, b: Broadcast) -> None:
    """Two transcript batches of the recorded broadcast, as an ASR worker would commit them: a flagged
    line at 2-5 s, then a plain one; the watermark (14 s) is past the alert, so it closes."""
    lines = [
        TranscriptBatch(b.id, "room-0", (Utterance(0, 2.0, 5.0, FLAGGED),), 10.0, False),
        TranscriptBatch(b.id, "room-0", (Utterance(1, 10.0, 11.0, "大家好欢迎来到直播间"),), 14.0, False),
    ]
    bus = BusSection(url=bus_url)
    nc = await connect(bus, "test-publish")
    try:
        js = nc.jetstream()
        await ensure_transcripts_stream(js, bus)
        for seq, batch in enumerate(lines):
            with db.session() as s, s.begin():
                _store_batch(s, batch, (b.started_ts or time.time()) + batch.done_s)
            msg = TranscriptMessage(batch, seq, b.started_ts, b.source_start_s)
            await _publish(js, transcript_subject("room-0"), msg, 30.0)
    finally:
        await nc.drain()


def _outbox(db: Database) -> list[WebhookOutbox]:
    with db.session() as s:
        rows = s.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)).all()
        s.expunge_all()
        return list(rows)


def _check_post(headers: dict[str, str], body: bytes, data: Path) -> dict[str, Any]:
    """A POST is signed, carries the alert with its evidence cut, and the clip's hash is the file's."""
    assert headers["x-livewatch-signature"] == sign(SECRET.encode(), headers["x-livewatch-timestamp"], body)
    msg = json.loads(body)
    assert msg["type"] == "alert" and str(msg["delivery"]) == headers["x-livewatch-delivery"]
    alert = msg["alert"]
    assert alert["category"] == "consumer_rights" and alert["evidence_status"] == "done", alert
    ev = alert["evidence"]
    folder = resolve_stored(ev["dir"], data)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert sha256_file(folder / "manifest.json") == ev["manifest_sha256"]
    clip = manifest["clip"]["file"]
    assert ev["files"][clip]["sha256"] == sha256_file(folder / clip)
    assert probe(folder / clip).has_audio  # a clip that plays
    return msg


@pytest.mark.slow
def test_an_alert_on_the_bus_gives_one_signed_post_per_hook_with_the_clips_hash(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    media = cut_media(CORPUS / "broadcast_0.mp4", tmp_path / "b0.mp4", 30)
    data = tmp_path / "data"
    db = Database.for_data_dir(data)
    hooks = [HookReceiver(), HookReceiver()]
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "workers.log"
    try:
        with HlsServer(media, tmp_path / "hls") as server:
            config = _config(tmp_path, data, nats.url, server.url, hooks)
            procs.append(start_worker(config, log, "ingest"))
            procs.append(start_worker(config, log, "analyze"))
            wait_for(lambda: bool(broadcasts(db, "room-0")), 60, "the broadcast recorded", procs)
            (b,) = broadcasts(db, "room-0")
            asyncio.run(_publish_lines(nats.url, db, b))
            wait_for(
                lambda: len(_outbox(db)) == 2 and all(r.delivered_ts is not None for r in _outbox(db)),
                120,
                "both hooks delivered",
                procs,
            )
            assert recorded_s(db, b.id) >= 7.0  # the clip's post-roll was on disk before the POST
        stop_workers(procs)
        assert all(p.returncode == 0 for p in procs), log.read_text(errors="replace")[-3000:]
        for h in hooks:
            assert len(h.requests) == 1, [hd.get("x-livewatch-delivery") for hd, _ in h.requests]
            _check_post(*h.requests[0], data)
        rows = _outbox(db)
        assert [r.attempts for r in rows] == [1, 1] and len({r.alert_id for r in rows}) == 1
        with db.session() as s:
            (alert,) = s.scalars(select(AlertRow)).all()
            assert alert.evidence_status == "done" and alert.broadcast_id == b.id
    finally:
        stop_workers(procs)
        for h in hooks:
            h.close()
        db.dispose()


@pytest.mark.slow
def test_ingest_worker_killed_mid_post_the_adopting_worker_delivers_with_the_same_id(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    media = cut_media(CORPUS / "broadcast_0.mp4", tmp_path / "b0.mp4", 40)
    data = tmp_path / "data"
    db = Database.for_data_dir(data)
    hook = HookReceiver(hold_first=True)
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "workers.log"
    try:
        with HlsServer(media, tmp_path / "hls") as server:
            config = _config(tmp_path, data, nats.url, server.url, [hook])
            first = start_worker(config, log, "ingest")
            procs += [first, start_worker(config, log, "analyze")]
            wait_for(lambda: bool(broadcasts(db, "room-0")), 60, "the broadcast recorded", procs)
            (b,) = broadcasts(db, "room-0")
            asyncio.run(_publish_lines(nats.url, db, b))
            wait_for(lambda: len(hook.requests) == 1, 120, "the first worker's POST", procs)
            os.kill(first.pid, signal.SIGKILL)  # the receiver holds the request: no 2xx reaches it
            first.wait(10)
            hook.release()
            (row,) = _outbox(db)
            assert row.delivered_ts is None and row.attempts == 0  # enqueued, not delivered
            procs.append(start_worker(config, log, "ingest"))
            wait_for(lambda: _outbox(db)[0].delivered_ts is not None, 120, "the adopter's delivery", procs)
            stop_workers(procs)
        with db.session() as s:
            old = s.get(Broadcast, b.id)
            # adopted by the second worker (the same data directory): its webhooks are that worker's now
            assert old is not None and old.owner is not None and not old.owner.endswith(f"-{first.pid}")
            assert old.end_reason is not None and "taken over" in old.end_reason
        ids = [h["x-livewatch-delivery"] for h, _ in hook.requests]
        assert len(ids) >= 2 and set(ids) == {str(row.id)}  # the same delivery id: the receiver de-duplicates
        for headers, body in hook.requests:
            _check_post(headers, body, data)
        (done,) = _outbox(db)
        assert done.delivered_ts is not None and done.attempts == 1  # marked delivered once, by the adopter
    finally:
        stop_workers(procs)
        hook.close()
        db.dispose()


# -- which alerts a worker delivers (no bus) ---------------------------------------------------------------


def _alert(s: Any, alert_id: str, broadcast_id: str, evidence: str) -> None:
    s.add(
        AlertRow(
            id=alert_id, broadcast_id=broadcast_id, stream_id="room", category="consumer_rights",
            code="c", rule_id="r", severity="high", source="speech", start_s=1.0, end_s=2.0, text="x",
            rules_version="", evidence_status=evidence, payload={"alert_id": alert_id}, created_ts=0.0,
        )
    )  # fmt: skip


def test_a_worker_delivers_its_settled_alerts_and_failed_broadcasts_on_its_streams(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "bus": {"url": "nats://127.0.0.1:1", "ingest_lease_s": 3},
            "streams": [{"id": "room", "url": "hls://http://127.0.0.1:1/index.m3u8"}],
            "webhooks": [{"url": "http://127.0.0.1:1/hook"}],
        }
    )
    db = Database.for_data_dir(tmp_path / "data")
    runner = IngestRunner(cfg, db, tmp_path / "data", name="ingest-me-1")
    runner.held["room"] = object()  # type: ignore[assignment]  # holds the stream's lease
    with db.session() as s, s.begin():
        for bid, owner, stream in (("mine", "ingest-me-1", "room"), ("lost", "ingest-dead-2", "room"),
                                   ("other", "ingest-alive-3", "elsewhere")):  # fmt: skip
            LiveStore.start_broadcast(
                s, broadcast_id=bid, stream_id=stream, url="hls://x", name=stream, folder=str(tmp_path / bid),
                started_ts=1_760_000_000.0, source_start_s=0.0, rules_version="", owner=owner,
            )  # fmt: skip
        s.get(Broadcast, "lost").status = "failed"  # type: ignore[union-attr]  # closed: recordings out of reach
        _alert(s, "a-cut", "mine", "done")
        _alert(s, "a-failed", "mine", "failed")
        _alert(s, "a-pending", "mine", "pending")  # its clip is not cut yet: wait
        _alert(s, "a-lost", "lost", "pending")  # nobody will cut it: deliver without a clip
        _alert(s, "a-other", "other", "done")  # another worker's
        for a in ("a-cut", "a-failed", "a-pending", "a-lost", "a-other"):
            enqueue(s, a, "consumer_rights", "high", cfg.webhooks, 0.0)
    with db.session() as s:
        got = s.scalars(select(AlertRow.id).where(runner.hook_scope()).order_by(AlertRow.id)).all()
    assert got == ["a-cut", "a-failed", "a-lost"]
    runner.held.clear()  # the stream lost: its failed broadcasts are no longer this worker's to deliver
    with db.session() as s:
        got = s.scalars(select(AlertRow.id).where(runner.hook_scope()).order_by(AlertRow.id)).all()
    assert got == ["a-cut", "a-failed"]
    runner.writer.stop()
    db.dispose()
