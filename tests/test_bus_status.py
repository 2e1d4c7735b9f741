"""`livewatch bus status` and the ASR workers' admission control, on a real nats-server (no model).

- A stream with audio waiting and no ASR lease is shown as waiting for ASR (exit status 3); a stream
  with a lease shows the worker, host, lag and backlog from the lease; other stages' lease buckets
  (LW_<STAGE>_LEASES) appear under their stage; batches waiting for analysis are counted per stream.
- A bus that cannot be reached is a clear error within the timeout, not a hang.
- An ASR worker whose streams are behind by more than `bus.asr_admit_backlog_s` claims no new stream
  (the stream stays on the bus, unclaimed, and is named in a warning); once it has caught up it claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerts.webhook import WebhookConfig
from app.bus_asr_run import LEASES, AsrRunner, _Stream
from app.bus_audio import ensure_audio_stream
from app.bus_config import BusSection
from app.bus_server import EmbeddedNats, free_port
from app.bus_status import BusUnreachable, bus_status, given_up, lease_buckets, summarize
from app.bus_wire import AudioChunk, audio_subject, encode_audio, subject_token

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


def _chunk(stream: str, seq: int) -> AudioChunk:
    return AudioChunk(f"b-{stream}", stream, seq, float(seq), b"\x00\x00" * 1600)


async def _setup(bus: BusSection) -> None:
    import nats as nats_py
    from nats.js.api import KeyValueConfig

    nc = await nats_py.connect(bus.url)
    try:
        js = nc.jetstream()
        await ensure_audio_stream(js, bus)
        for stream, n in (("room.1", 3), ("room-2", 2)):
            for seq in range(n):
                await js.publish(audio_subject(stream), encode_audio(_chunk(stream, seq)))
        asr = await js.create_key_value(KeyValueConfig(bucket=LEASES, ttl=30))
        await asr.put(subject_token("room-2"), json.dumps(
            {"worker": "asr-a", "host": "box-7", "pid": 42, "lag_s": 3.5, "backlog_s": 1.0}).encode())
        ingest = await js.create_key_value(KeyValueConfig(bucket="LW_INGEST_LEASES", ttl=30))
        for stream in ("room.1", "room-2"):
            await ingest.put(subject_token(stream), json.dumps({"worker": "ing-1", "host": "box-1"}).encode())
    finally:
        await nc.close()


def test_status_shows_who_serves_each_stream_and_which_wait_for_asr(nats: EmbeddedNats, tmp_path: Path) -> None:
    bus = BusSection(url=nats.url)
    asyncio.run(_setup(bus))
    st = asyncio.run(bus_status(bus))
    rows = {r.token: r for r in st.streams}
    assert set(rows) == {"room=2E1", "room-2"}
    one, two = rows["room=2E1"], rows["room-2"]
    assert (one.state, one.audio_waiting, sorted(one.leases)) == ("waiting for ASR", 3, ["ingest"])
    assert (two.state, two.audio_waiting) == ("served", 2)
    assert two.leases["asr"] == {"worker": "asr-a", "host": "box-7", "pid": 42, "lag_s": 3.5, "backlog_s": 1.0}
    assert two.leases["ingest"]["host"] == "box-1"
    assert st.buckets == ["LW_ASR_LEASES", "LW_INGEST_LEASES"]
    assert st.analyze_pending is None  # no transcripts stream yet: nothing to show, nothing created

    cfg = tmp_path / "bus.yaml"
    cfg.write_text(f"bus: {{url: '{nats.url}'}}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 3, res.stderr  # a stream waits for ASR
    got = json.loads(res.stdout)
    assert [(s["token"], s["state"]) for s in got["streams"]] == [("room-2", "served"), ("room=2E1", "waiting for ASR")]
    table = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg)],
                           capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=120)
    assert "asr: asr-a@box-7 pid 42" in table.stdout and "wait for ASR capacity: room=2E1" in table.stdout


def test_unreachable_bus_is_a_clear_error_within_the_timeout() -> None:
    bus = BusSection(url=f"nats://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(BusUnreachable, match="cannot be reached"):
        asyncio.run(bus_status(bus, timeout_s=1.0))
    assert time.monotonic() - t0 < 10


def test_summary_and_bucket_names() -> None:
    assert lease_buckets(["LW_ASR_LEASES", "LW_INGEST_LEASES", "OTHER", "LW__LEASES"]) == {
        "LW_ASR_LEASES": "asr", "LW_INGEST_LEASES": "ingest"}
    rows = summarize({"asr": {"a": {"worker": "w"}}}, {"a": 1, "b": 2}, {"c": 4})
    assert [(r.token, r.state) for r in rows] == [("a", "served"), ("b", "waiting for ASR"), ("c", "served")]


class _NoAsr:
    def __init__(self) -> None:
        self.broadcasts: dict[str, Any] = {}


def test_a_worker_behind_claims_no_new_stream_until_it_catches_up(
    nats: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    bus = BusSection(url=nats.url, asr_admit_backlog_s=20)
    asyncio.run(_setup(bus))

    async def discover(backlog_s: float) -> tuple[list[str], Any]:
        import nats as nats_py
        from nats.js.api import KeyValueConfig

        nc = await nats_py.connect(bus.url)
        try:
            runner = AsrRunner(_NoAsr(), bus, name="asr-b")  # type: ignore[arg-type]
            runner.js = nc.jetstream()
            runner.kv = await runner.js.create_key_value(KeyValueConfig(bucket=LEASES, ttl=30))
            held = _Stream("room-2", 1, behind_s=backlog_s)  # pretend it serves room-2, this far behind
            runner.streams["room-2"] = held
            await runner._discover()
            claimed = sorted(set(runner.streams) - {"room-2"})
            for st in list(runner.streams.values()):
                if st is not held and st.task is not None:
                    st.task.cancel()
            return claimed, await runner.kv.keys()
        finally:
            await nc.close()

    with caplog.at_level(logging.WARNING, logger="app.bus_asr_run"):
        claimed, keys = asyncio.run(discover(35.0))
    assert claimed == []
    assert "room=2E1" not in keys  # left on the bus for a worker with room
    assert any("room=2E1 wait for ASR" in r.getMessage() for r in caplog.records)

    claimed, keys = asyncio.run(discover(5.0))
    assert claimed == ["room=2E1"] and "room=2E1" in keys


# -- video waiting and webhook rows (LW_VIDEO, the store) ----------------------------------------------


async def _put_video(bus: BusSection, counts: dict[str, int]) -> None:
    import nats as nats_py

    from app.bus_analyze import ensure_video_stream
    from app.bus_wire import video_subject

    nc = await nats_py.connect(bus.url)
    try:
        js = nc.jetstream()
        await ensure_video_stream(js, bus)
        for stream, n in counts.items():
            for i in range(n):
                await js.publish(video_subject(stream), f"batch {i}".encode())  # counted, not read
    finally:
        await nc.close()


def _store_hooks(data: Path, hook_url: str) -> None:
    """Outbox rows of two streams: room.1 one delivered, two pending (one retried), one given up (12
    failed POSTs), one of a URL no longer configured; room-3 one pending (nothing of it on the bus)."""
    from app.webhooks import enqueue
    from store.db import Database
    from store.live import LiveStore
    from store.models import AlertRow, WebhookOutbox

    db = Database.for_data_dir(data)
    with db.session() as s, s.begin():
        for stream in ("room.1", "room-3"):
            LiveStore.start_broadcast(
                s, broadcast_id=f"b-{stream}", stream_id=stream, url="hls://x", name=stream, folder=str(data),
                started_ts=1_760_000_000.0, source_start_s=0.0, rules_version="", owner="ingest-a",
            )  # fmt: skip
        rows = [("a1", "room.1", 0, 5.0), ("a2", "room.1", 0, None), ("a3", "room.1", 3, None),
                ("a4", "room.1", 12, None), ("a5", "room-3", 0, None)]  # fmt: skip
        for alert_id, stream, attempts, delivered in rows:
            s.add(AlertRow(
                id=alert_id, broadcast_id=f"b-{stream}", stream_id=stream, category="consumer_rights", code="c",
                rule_id="r", severity="high", source="speech", start_s=1.0, end_s=2.0, text="x",
                rules_version="", evidence_status="done", payload={}, created_ts=0.0,
            ))  # fmt: skip
            s.flush()
            enqueue(s, alert_id, "consumer_rights", "high", [WebhookConfig(url=hook_url)], 0.0)
            s.flush()
            row = s.scalars(select(WebhookOutbox).where(WebhookOutbox.alert_id == alert_id)).one()
            row.attempts, row.delivered_ts = attempts, delivered
        s.add(WebhookOutbox(alert_id="a2", url="http://old.example/hook", attempts=1, next_try_ts=0.0))
    db.dispose()


def test_status_shows_video_waiting_and_webhook_rows_per_stream(nats: EmbeddedNats, tmp_path: Path) -> None:
    bus = BusSection(url=nats.url)
    asyncio.run(_setup(bus))
    asyncio.run(_put_video(bus, {"room.1": 4, "room-2": 1}))
    data = tmp_path / "data"
    _store_hooks(data, "http://127.0.0.1:9/hook")

    cfg = tmp_path / "bus.yaml"
    cfg.write_text(
        f"bus: {{url: '{nats.url}'}}\ndata_dir: '{data}'\nstreams: [{{id: room.1, url: 'hls://x'}}]\n"
        "webhooks: [{url: 'http://127.0.0.1:9/hook'}]\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LIVEWATCH_DB_URL", None)
    env.pop("LIVEWATCH_DATA_DIR", None)
    res = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 3, res.stderr
    got = {s["token"]: s for s in json.loads(res.stdout)["streams"]}
    assert json.loads(res.stdout)["store"].endswith("livewatch.db")
    pick = ("video_waiting", "webhooks_pending", "webhooks_failed", "state")
    assert {t: tuple(s[k] for k in pick) for t, s in got.items()} == {
        "room=2E1": (4, 2, 2, "waiting for ASR"),
        "room-2": (1, 0, 0, "served"),
        "room-3": (0, 1, 0, "idle"),  # nothing on the bus, a webhook still due
    }
    table = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg)],
                           capture_output=True, text=True, env={**env, "COLUMNS": "250"}, timeout=120)
    assert "webhooks pending" in table.stdout and "video batches waiting" in table.stdout, table.stdout
    assert "2 webhook delivery(ies) given up" in table.stdout

    # --no-store (or no database here): the bus alone, no counts, and no database created
    res = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg), "--json",
                          "--no-store"], capture_output=True, text=True, env=env, timeout=120)
    plain = json.loads(res.stdout)
    assert plain["store"] is None and {s["webhooks_pending"] for s in plain["streams"]} == {None}
    empty = tmp_path / "empty"
    res = subprocess.run([sys.executable, "-m", "app.cli", "bus", "status", "--config", str(cfg), "--json",
                          "--data-dir", str(empty)], capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(res.stdout)["store"] is None and not empty.exists()


def test_given_up_rows_and_the_summary_with_video_and_webhooks() -> None:
    hooks = [WebhookConfig(url="http://a/h", max_attempts=3)]
    assert not given_up("http://a/h", 2, hooks) and given_up("http://a/h", 3, hooks)
    assert given_up("http://gone/h", 0, hooks)  # a URL no longer configured: nobody posts it
    assert not given_up("http://any/h", 11, []) and given_up("http://any/h", 12, [])  # the default limit
    rows = summarize({}, {}, {}, {"v": 2}, {"h": (1, 0)})
    assert [(r.token, r.state, r.video_waiting, r.webhooks_pending) for r in rows] == [
        ("h", "idle", 0, 1), ("v", "served", 2, 0)]
    assert summarize({}, {"a": 1}, {})[0].webhooks_pending is None  # the store not read
