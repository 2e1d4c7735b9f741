"""The ingest stage on a real NATS JetStream bus: `livewatch worker ingest` records live HLS on 127.0.0.1
(the monitor's recorder, streamlink + ffmpeg) and publishes the audio as chunks; kill -9 of the worker,
and a second worker that claims the stream after the lease, closes the dead one's broadcast with a gap
and publishes the rest of its audio from its files. No ASR here (the chunks are read off the bus); the
acceptance test with ASR and analysis is tests/test_bus_acceptance.py. SQLite; waits on state with
deadlines, never fixed sleeps."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from live_helpers import CORPUS, HlsServer
from sqlalchemy import func, select

from app.bus_analyze import connect
from app.bus_config import BusSection
from app.bus_ingest import AudioChunker, IngestRunner
from app.bus_server import EmbeddedNats
from app.bus_wire import AUDIO_STREAM, AudioChunk, decode_audio
from app.monitor_config import MonitorConfig
from ingest import ffmpeg
from review.monitor_status import stream_statuses
from store.db import Database
from store.live import LiveStore
from store.models import Broadcast, BroadcastGap, MediaSegmentRow

ROOT = Path(__file__).resolve().parent.parent


# -- the chunker (no I/O) --------------------------------------------------------------------------------


def test_chunker_cuts_even_chunks_numbered_from_zero_and_a_final_one() -> None:
    out: list[AudioChunk] = []
    c = AudioChunker("b", "room", out.append, chunk_s=0.5)
    for i in range(7):  # 7 x 0.3 s of audio in 0.3 s pieces = 4 chunks of 0.5 s + 0.1 s
        c.add(i * 0.3, np.full(4800, 0.25, dtype=np.float32))
    c.finish()
    assert [ch.seq for ch in out] == [0, 1, 2, 3, 4]
    assert [ch.final for ch in out] == [False] * 4 + [True]
    assert [round(ch.start_s, 3) for ch in out] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [len(ch.pcm) // 2 for ch in out] == [8000] * 4 + [1600]
    assert np.frombuffer(out[0].pcm, "<i2")[0] == 8192


def test_chunker_same_audio_gives_same_ids_and_a_jump_sends_the_chunk_short() -> None:
    def run() -> list[AudioChunk]:
        out: list[AudioChunk] = []
        c = AudioChunker("b", "room", out.append, chunk_s=1.0)
        c.add(0.0, np.zeros(12_000, dtype=np.float32))
        c.add(3.0, np.zeros(16_000, dtype=np.float32))  # 2.25 s of audio missing
        c.finish()
        return out

    a, b = run(), run()
    assert [(x.msg_id, x.start_s, x.pcm) for x in a] == [(x.msg_id, x.start_s, x.pcm) for x in b]
    assert [(x.start_s, x.duration_s) for x in a] == [(0.0, 0.75), (3.0, 1.0), (4.0, 0.0)]


# -- the worker on a real bus -------------------------------------------------------------------------


def cut_media(src: Path, dst: Path, seconds: float) -> Path:
    """The first `seconds` of a corpus file, stream-copied (no re-encoding)."""
    subprocess.run(
        [
            ffmpeg.ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-t",
            str(seconds),
            "-c",
            "copy",
            str(dst),
        ],
        check=True,
    )
    return dst


def ingest_config(
    path: Path,
    data: Path,
    bus_url: str,
    streams: dict[str, str],
    bus: dict[str, object] | None = None,
    **extra: object,
) -> Path:
    cfg = {
        "data_dir": str(data),
        "semantic": {"enabled": False},
        "bus": {"url": bus_url, "ingest_lease_s": 3, "ack_wait_s": 5, "retry_delay_s": 0.2, **(bus or {})},
        "streams": [
            {
                "id": sid,
                "url": url,
                "stall_timeout_s": 6,
                "hls_live_edge": 1,
                "reconnect": {"initial_s": 1, "max_s": 2},
            }
            for sid, url in streams.items()
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def start_worker(config: Path, log: Path, stage: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app.cli", "worker", stage, "--config", str(config)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
        time.sleep(0.1)


def broadcasts(db: Database, stream_id: str) -> list[Broadcast]:
    with db.session() as s:
        rows = s.scalars(
            select(Broadcast).where(Broadcast.stream_id == stream_id).order_by(Broadcast.started_ts)
        ).all()
        s.expunge_all()
        return list(rows)


def recorded_s(db: Database, bid: str) -> float:
    with db.session() as s:
        end = s.scalar(
            select(func.max(MediaSegmentRow.start_s + MediaSegmentRow.duration_s)).where(
                MediaSegmentRow.broadcast_id == bid
            )
        )
        return float(end or 0.0)


def gaps(db: Database, stream_id: str) -> list[BroadcastGap]:
    with db.session() as s:
        rows = s.scalars(select(BroadcastGap).where(BroadcastGap.stream_id == stream_id)).all()
        s.expunge_all()
        return list(rows)


async def drain_audio(bus_url: str) -> dict[str, list[AudioChunk]]:
    """Every audio chunk on the bus, by broadcast (read with a throwaway consumer, in order)."""
    nc = await connect(BusSection(url=bus_url), "test-drain")
    try:
        js = nc.jetstream()
        info = await js.stream_info(AUDIO_STREAM)
        sub = await js.pull_subscribe("lw.audio.>", durable="test_drain", stream=AUDIO_STREAM)
        out: dict[str, list[AudioChunk]] = defaultdict(list)
        left = info.state.messages
        while left > 0:
            msgs = await sub.fetch(min(256, left), timeout=5)
            for m in msgs:
                c = decode_audio(m.data)
                out[c.broadcast_id].append(c)
                await m.ack()
            left -= len(msgs)
        return out
    finally:
        await nc.close()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.mark.slow
def test_ingest_worker_publishes_audio_and_a_second_worker_takes_over_after_kill_9(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    media = cut_media(CORPUS / "broadcast_0.mp4", tmp_path / "b0.mp4", 30)
    data = tmp_path / "data"
    db = Database.for_data_dir(data)
    procs: list[subprocess.Popen[bytes]] = []
    with HlsServer(media, tmp_path / "hls") as server:
        config = ingest_config(
            tmp_path / "ingest.yaml", data, nats.url, {"room-0": server.url}, video={"enabled": False}
        )
        log = tmp_path / "ingest.log"
        try:
            first = start_worker(config, log, "ingest")
            procs.append(first)
            wait_for(
                lambda: any(recorded_s(db, b.id) >= 8 for b in broadcasts(db, "room-0")),
                60,
                "8 s recorded by the first worker",
                procs,
            )
            os.kill(first.pid, signal.SIGKILL)
            killed = time.time()
            first.wait(10)
            procs.append(start_worker(config, log, "ingest"))
            wait_for(lambda: len(broadcasts(db, "room-0")) >= 2, 60, "the stream taken over", procs)
            reclaim_s = broadcasts(db, "room-0")[1].created_ts - killed
            # `livewatch status` (no monitor running): the stream is recorded by the second worker
            _, rows = stream_statuses(db, data, time.time())
            st = next(r for r in rows if r.stream_id == "room-0")
            assert st.state == "recording" and st.server_alive, st
            assert (
                st.served_by is not None
                and st.served_by.startswith("ingest-")
                and f"-{procs[1].pid}@" in st.served_by
            )
            wait_for(lambda: server.finished, 60, "the HLS producer to finish", procs)
            wait_for(
                lambda: all(b.status != "live" for b in broadcasts(db, "room-0")),
                60,
                "the broadcasts ended",
                procs,
            )
        finally:
            stop_workers(procs)
    rows = broadcasts(db, "room-0")
    old, new = rows[0], rows[-1]
    assert old.end_reason is not None and "taken over" in old.end_reason
    assert old.owner == new.owner  # adopted (the same data directory): its evidence is cut by the new worker
    stored = [g for g in gaps(db, "room-0") if g.end_ts is not None]
    assert stored, "the takeover's gap is in the ledger"
    gap_s = sum(g.end_ts - g.start_ts for g in stored if g.end_ts is not None)
    chunks = asyncio.run(drain_audio(nats.url))
    refined: list[float] = []
    for b in rows:  # every broadcast's audio: numbered from 0, one final chunk at the end, all recorded
        cs = chunks[b.id]
        seqs = [c.seq for c in cs]
        assert seqs == list(range(len(cs))), (b.id, seqs[:5], len(cs))
        assert [c.final for c in cs].count(True) == 1 and cs[-1].final
        audio_s = sum(c.duration_s for c in cs)
        assert abs(audio_s - recorded_s(db, b.id)) < 2.5, (b.id, audio_s, recorded_s(db, b.id))
        # the live clock sent with the chunks is refined from file arrivals: it only ever moves earlier,
        # and the stored row holds the earliest (what the ASR and analyze workers place alerts by)
        clocks = [c.started_ts for c in cs if c.started_ts is not None]
        assert all(a >= b2 for a, b2 in itertools.pairwise(clocks)), clocks[:10]
        assert clocks and b.started_ts is not None and b.started_ts <= min(clocks) + 1e-6
        refined.append(clocks[0] - b.started_ts)
    assert all(c.started_ts is not None for c in chunks[new.id])  # the second worker's own broadcast
    print(
        f"re-claim {reclaim_s:.1f} s after kill -9 (lease 3 s); gap stored {gap_s:.2f} s "
        f"({'; '.join(g.reason for g in stored)}); broadcasts {[round(recorded_s(db, b.id), 1) for b in rows]} s; "
        f"live clocks refined by {[round(r, 2) for r in refined]} s"
    )
    db.dispose()


# -- takeover, without a bus ----------------------------------------------------------------------------


def _runner(tmp_path: Path, name: str) -> tuple[IngestRunner, list[AudioChunk], Database]:
    cfg = MonitorConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "bus": {"url": "nats://127.0.0.1:1", "ingest_lease_s": 3},
            "streams": [{"id": "room", "url": "hls://http://127.0.0.1:1/index.m3u8"}],
        }
    )
    db = Database.for_data_dir(tmp_path / "data")
    runner = IngestRunner(cfg, db, tmp_path / "data", name=name)
    sent: list[AudioChunk] = []
    runner._emit = sent.append  # type: ignore[method-assign]
    runner.writer.start()
    return runner, sent, db


def _dead_broadcast(db: Database, folder: Path, *, registered: int) -> None:
    with db.session() as s, s.begin():
        LiveStore.start_broadcast(
            s, broadcast_id="dead-b", stream_id="room", url="hls://x", name="room", folder=str(folder),
            started_ts=1_760_000_000.0, source_start_s=0.0, rules_version="", owner="ingest-dead-1",
        )  # fmt: skip
        for seq in range(registered):
            LiveStore.add_segment(
                s, broadcast_id="dead-b", seq=seq, path=str(folder / ffmpeg.segment_name(seq)), start_s=2.0 * seq,
                duration_s=2.0, size=1, created_ts=1_760_000_002.0 + 2 * seq, hls_seq=seq,
            )  # fmt: skip


def test_takeover_of_unreachable_recordings_closes_the_broadcast_as_failed_and_sends_a_final_chunk(
    tmp_path: Path,
) -> None:
    runner, sent, db = _runner(tmp_path, "ingest-new-2")
    try:
        _dead_broadcast(db, tmp_path / "elsewhere" / "dead-b", registered=3)
        runner.take_over("room")
    finally:
        runner.writer.stop()
    with db.session() as s:
        b = s.get(Broadcast, "dead-b")
        assert b is not None and b.status == "failed" and "ingest-dead-1" in (b.end_reason or "")
        assert b.owner == "ingest-dead-1"  # not adopted: its files are not here
    assert [g.end_ts for g in gaps(db, "room")] == [None]  # open until the stream records again
    assert [(c.final, c.pcm, c.start_s) for c in sent] == [(True, b"", 6.0)]
    db.dispose()


def test_takeover_registers_the_dead_workers_files_adopts_and_publishes_its_audio_again(
    tmp_path: Path,
) -> None:
    runner, sent, db = _runner(tmp_path, "ingest-new-2")
    folder = tmp_path / "data" / "recordings" / "room" / "dead-b"
    folder.mkdir(parents=True)
    for seq in range(2):  # two 2 s MPEG-TS files; the dead worker registered only the first
        subprocess.run(
            [ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-ss", str(2 * seq), "-t", "2", "-i", str(CORPUS / "broadcast_0.mp4"),
             "-c:a", "aac", "-vn", "-output_ts_offset", str(2 * seq), "-f", "mpegts", str(folder / ffmpeg.segment_name(seq))],
            check=True,
        )  # fmt: skip
    try:
        _dead_broadcast(db, folder, registered=1)
        runner.take_over("room")
    finally:
        runner.writer.stop()
    with db.session() as s:
        b = s.get(Broadcast, "dead-b")
        assert b is not None and b.status == "ended" and b.owner == "ingest-new-2"
        assert b.duration_s is not None and b.duration_s > 3.5  # the second file registered too
        n = s.scalar(
            select(func.count()).select_from(MediaSegmentRow).where(MediaSegmentRow.broadcast_id == "dead-b")
        )
        assert n == 2
    assert [c.seq for c in sent] == list(range(len(sent))) and sent[-1].final
    assert 3.5 < sum(c.duration_s for c in sent) < 4.5
    db.dispose()
