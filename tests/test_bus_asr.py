"""The ASR stage on a real NATS JetStream bus, with the real Whisper base model and SQLite.

broadcast_0's audio (examples/corpus/broadcast_0.flac) is published in 1 s chunks as an ingest worker
would (`publish_audio`: ffmpeg decodes it to 16 kHz PCM); `livewatch worker asr` and `livewatch worker
analyze` run as separate processes. The ASR worker transcribes with the monitor's sliding window, so
its lines are not the scan's (the scan decodes the whole file at once): the alerts are compared with
the scan path's (app/analysis.py on the scan's Whisper transcript of the same file,
tests/data/asr_broadcast_0.json) by category and time, as tools/score.py scores alerts against spans.

Tolerance: an alert matches when the other side has one of the same category overlapping it within
±2 s; at least 85 % of the scan's alerts must be matched by a bus alert and at least 85 % of the bus's
alerts by a scan alert (on this file today: 18 of 19 and 18 of 18). "Exactly once": no two stored
alerts of one category overlap, each detection is stored once, and the stored lines of a broadcast have
the indices 0..n-1 and do not overlap in time. Tests wait on the store's state with deadlines, never
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_backends import BACKENDS, backend_url
from test_bus_analyze import _expected, wait_for

from app.bus_analyze import connect
from app.bus_audio import AudioPublishOptions, publish_audio
from app.bus_config import BusSection
from app.bus_server import EmbeddedNats
from app.bus_wire import AUDIO_STREAM, TRANSCRIPTS_STREAM
from store.db import Database
from store.models import AlertRow, Broadcast, DetectionRow, UtteranceRow

pytestmark = [pytest.mark.slow, pytest.mark.model]

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "examples" / "corpus" / "broadcast_0.flac"
STARTED_TS = 1_760_000_000.0
SHARE = 0.85  # the tolerance: share of alerts each side must find on the other


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def _config(tmp_path: Path, bus_url: str, db_url: str | None = None) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        + (f"db_url: '{db_url}'\n" if db_url else "")
        + "semantic: {enabled: false}\n"
        f"bus: {{url: '{bus_url}', ack_wait_s: 5, retry_delay_s: 0.2, asr_lease_s: 3, asr_batch: 4, "
        "asr_batch_cpu: true, asr_batch_wait_ms: 300}\n",  # the batching path, on a CPU-only machine
        encoding="utf-8",
    )
    return path


def _worker(config: Path, log: Path, stage: str, *script: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, *script] if script else [sys.executable, "-m", "app.cli", "worker", stage,
                                                    "--config", str(config)]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _publish(bus_url: str, db: Database, streams: dict[str, str]) -> None:
    """broadcast_0's audio on each stream (stream id -> broadcast id), all at once."""
    bus = BusSection(url=bus_url)
    await asyncio.gather(
        *(
            publish_audio(bus, db, MEDIA, AudioPublishOptions(st, bid, STARTED_TS))
            for st, bid in streams.items()
        )
    )


def _row(db: Database, bid: str) -> Broadcast | None:
    with db.session() as s:
        return s.get(Broadcast, bid)


def _analysed(db: Database, *bids: str) -> bool:
    rows = [_row(db, b) for b in bids]
    return all(r is not None and r.analysis_complete for r in rows)


def _alerts(db: Database, bid: str) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(
            select(AlertRow).where(AlertRow.broadcast_id == bid).order_by(AlertRow.start_s)
        ).all()
        return [{"id": r.id, "category": r.category, "start_s": r.start_s, "end_s": r.end_s} for r in rows]


def _near(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["category"] == b["category"]
        and a["start_s"] <= b["end_s"] + 2.0
        and a["end_s"] >= b["start_s"] - 2.0
    )


def _check(db: Database, bid: str, expected: list[dict[str, Any]]) -> tuple[int, int]:
    """The bus's alerts of `bid` against the scan's (see the module docstring); (found, matched)."""
    got = _alerts(db, bid)
    found = sum(any(_near(e, g) for g in got) for e in expected)
    matched = sum(any(_near(g, e) for e in expected) for g in got)
    assert found >= SHARE * len(expected), (found, len(expected), got)
    assert matched >= SHARE * len(got), (matched, len(got), got)
    for a, b in itertools.combinations(got, 2):  # each once: one category's alerts never overlap
        assert not (
            a["category"] == b["category"] and a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]
        ), (a, b)
    with db.session() as s:
        dets = s.execute(
            select(DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id, func.count())
            .join(AlertRow, AlertRow.id == DetectionRow.alert_id)
            .where(AlertRow.broadcast_id == bid)
            .group_by(DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id)
        ).all()
        assert dets and all(n == 1 for *_, n in dets)
        lines = s.scalars(
            select(UtteranceRow)
            .where(UtteranceRow.broadcast_id == bid, UtteranceRow.source == "speech")
            .order_by(UtteranceRow.idx)
        ).all()
    assert [u.idx for u in lines] == list(range(len(lines))) and len(lines) >= 20
    assert all(u.analyzed for u in lines)
    for a, b in itertools.pairwise(lines):  # no line transcribed twice
        assert b.start_s >= a.end_s - 0.05, (a.text, b.text)
    row = _row(db, bid)
    assert row is not None and row.asr_complete and row.status == "done"
    return found, matched


async def _bus_state(bus_url: str) -> tuple[int, int]:
    """(audio chunks left on the bus, transcript batches left on the bus)."""
    nc = await connect(BusSection(url=bus_url), "test")
    try:
        js = nc.jetstream()
        audio = await js.stream_info(AUDIO_STREAM)
        text = await js.stream_info(TRANSCRIPTS_STREAM)
        return audio.state.messages, text.state.messages
    finally:
        await nc.close()


def _batching(log: Path) -> tuple[int, int]:
    """(windows decoded, batches) from the ASR worker's last lag line."""
    found = re.findall(r"(\d+) passes in (\d+) batches", log.read_text(encoding="utf-8"))
    assert found, log.read_text(encoding="utf-8")[-2000:]
    return int(found[-1][0]), int(found[-1][1])


def test_asr_and_analyze_workers_raise_the_scans_alerts_on_two_streams(
    tmp_path: Path, nats: EmbeddedNats, db_url: str
) -> None:
    """Two streams carry broadcast_0 at once: one ASR worker decodes their windows in batches, one
    analyze worker raises the alerts; each broadcast's alerts are the scan's within the tolerance
    (SQLite and PostgreSQL)."""
    expected = _expected(tmp_path)
    config = _config(tmp_path, nats.url, db_url)
    db = Database(db_url, tmp_path / "data")
    log = tmp_path / "asr.log"
    procs = [_worker(config, log, "asr"), _worker(config, tmp_path / "analyze.log", "analyze")]
    streams = {"room-0": "busasr00000000a0", "room-1": "busasr00000000a1"}
    try:
        t0 = time.monotonic()
        asyncio.run(_publish(nats.url, db, streams))
        wait_for(lambda: _analysed(db, *streams.values()), 240, "both broadcasts analysed", procs)
        took = time.monotonic() - t0
        scores = [_check(db, bid, expected) for bid in streams.values()]
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)  # every chunk and batch acknowledged
        windows, batches = _batching(log)
        assert windows > batches  # the two streams' windows were decoded together
        print(
            f"2 x 124 s of audio through the bus in {took:.1f} s; {windows} windows in {batches} batches; "
            f"scan alerts found {scores} of {len(expected)}"
        )
    finally:
        _stop(procs)
        db.dispose()


def test_kill_9_of_the_asr_worker_mid_broadcast_loses_and_doubles_nothing(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    """The ASR worker dies (SIGKILL) right after storing transcript batch 3, before publishing it or
    acknowledging its audio; the next worker claims the stream once the lease lapses, publishes batch 3
    again from the store, skips the audio already transcribed and carries on."""
    expected = _expected(tmp_path)
    config = _config(tmp_path, nats.url)
    db = Database.for_data_dir(tmp_path / "data")
    log = tmp_path / "asr.log"
    first = _worker(config, log, "asr", str(ROOT / "tests" / "bus_kill_asr_worker.py"), str(config), "3")
    procs = [first, _worker(config, tmp_path / "analyze.log", "analyze")]
    bid = "busasr00000000k0"
    try:
        asyncio.run(_publish(nats.url, db, {"room-0": bid}))
        first.wait(180)
        assert first.returncode == -signal.SIGKILL
        row = _row(db, bid)
        assert row is not None and row.asr_bus_seq == 3 and not row.asr_complete
        stored_before = row.asr_done_s
        procs.append(_worker(config, log, "asr"))
        wait_for(lambda: _analysed(db, bid), 240, "the broadcast analysed", procs)
        _check(db, bid, expected)
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)
        text = log.read_text(encoding="utf-8")
        assert f"broadcast {bid}: ASR resumed from the store at {stored_before:.1f} s" in text
        row = _row(db, bid)
        assert row is not None and row.bus_seq == row.asr_bus_seq  # every batch stored was analysed
    finally:
        _stop(procs)
        db.dispose()


def test_kill_9_from_outside_while_decoding_and_a_restart(tmp_path: Path, nats: EmbeddedNats) -> None:
    """SIGKILL from outside once a few batches are stored (most likely in the middle of a decode, with
    audio chunks held and not acknowledged); a restarted worker finishes the broadcast: the scan's
    alerts within the tolerance, each once, every chunk acknowledged."""
    expected = _expected(tmp_path)
    config = _config(tmp_path, nats.url)
    db = Database.for_data_dir(tmp_path / "data")
    log = tmp_path / "asr.log"
    first = _worker(config, log, "asr")
    procs = [first, _worker(config, tmp_path / "analyze.log", "analyze")]
    bid = "busasr00000000k1"

    def stored() -> int:
        row = _row(db, bid)
        return -1 if row is None or row.asr_bus_seq is None else int(row.asr_bus_seq)

    try:
        asyncio.run(_publish(nats.url, db, {"room-0": bid}))
        wait_for(lambda: stored() >= 3, 180, "a few transcript batches stored", procs)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        row = _row(db, bid)
        assert row is not None and not row.asr_complete
        procs.append(_worker(config, log, "asr"))
        wait_for(lambda: _analysed(db, bid), 240, "the broadcast analysed", procs)
        _check(db, bid, expected)
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)
        assert f"broadcast {bid}: ASR resumed from the store at" in log.read_text(encoding="utf-8")
    finally:
        _stop(procs)
        db.dispose()
