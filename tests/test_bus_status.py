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

from app.bus_asr_run import LEASES, AsrRunner, _Stream
from app.bus_audio import ensure_audio_stream
from app.bus_config import BusSection
from app.bus_server import EmbeddedNats, free_port
from app.bus_status import BusUnreachable, bus_status, lease_buckets, summarize
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
