"""`livewatch worker ingest`: the recorders on the bus. Streams claimed by lease, audio out, evidence cut here.

    streams: of the config ──▶ LW_INGEST_LEASES (KV, TTL bus.ingest_lease_s): one key per stream
        │ a worker records only the streams whose key it created (at most bus.ingest_max_streams),
        │ renewing each every third of the TTL with a compare-and-set on the key's revision
        ▼
    IngestWorker (ingest/worker.py, the monitor's own: one recorder per claimed stream, HLS segments on
        │ this box's disk) ──▶ its port here: the broadcast / file rows in the store (DbWriter), and
        │ per broadcast an AudioFollower (ingest/tail.py, the monitor's) decoding the files as they grow
        ▼
    LW_AUDIO (work queue, lw.audio.<stream>): 16 kHz s16le AudioChunks of `CHUNK_S`, ids
        `<broadcast>:a<seq>` with seq counted over the broadcast's decoded audio from its first file, so
        decoding the same files again gives the same chunks (JetStream stores a re-publish once within
        its duplicate window; the ASR worker skips what it has, app/bus_asr_run.py) ──▶ ASR workers

Video never crosses the bus: the files stay where they were recorded, and their frames are read here by
the monitor's video reader (app/bus_video.py: OCR captions and visual detections of the streams that keep
video, as the monitor's `video:` section says), whose batches go to LW_VIDEO for the analyze workers
(a taken-over broadcast's video is read again from its stored watermark). Evidence is cut here too: the
worker runs the monitor's evidence worker (alerts/evidence_worker.py over app/live_evidence.py) for the
alerts of the broadcasts it owns (`broadcasts.owner` = this worker's name), which the analyze workers
raise with `evidence_status = 'pending'`; the clips land in this box's `data_dir/evidence`, and their
paths in the one store. Why here and not in a separate evidence worker: the recordings are on this box,
so cutting here moves no video over the network and needs no shared file system for the recordings;
the review app reads the evidence folder (run it where that folder is, or mount it; README "Scaling
out").

Webhooks are delivered here too, by the monitor's `WebhookDelivery` (app/webhooks.py) over the one
store's outbox: the analyze workers add the rows in the alert's transaction, and the worker that cuts an
alert's evidence posts them once the evidence is settled (`hook_scope`: cut, or failed), woken when a
clip is recorded, so a hook carries the hashed clip's manifest and file hashes. The broadcasts a worker
owns are the ones it delivers; a takeover that adopts a dead worker's broadcast delivers what was still
due (and cuts what was still pending first); a broadcast closed as failed because its recordings are out
of reach is delivered, without a clip, by the worker that holds its stream now. Delivery stays
at-least-once: a worker killed between a receiver's 2xx and its commit leaves the row due, and the
adopter posts it again with the same `X-Livewatch-Delivery` (the outbox row id, one row per alert and
URL in the shared store), which the receiver uses to drop the repeat.

Takeover: a worker that dies stops renewing; after the lease time another worker creates the key and,
before recording, closes what the dead one left live on that stream the way the monitor closes an
interrupted broadcast at restart: ended at its last recorded file, a gap opened in the ledger
(`LiveStore.end_broadcast`), which the new broadcast closes (`LiveStore.start_broadcast`: placed on the
media timeline when the rejoin says how much was lost). When the dead worker's recordings are reachable
here (same data directory, or a shared one), the broadcast is adopted (owner = this worker, so its
alerts' evidence is cut here) and its audio is published again from its files (the chunks on the bus
already are taken once; the rest, then the final chunk, reach the ASR); otherwise it is closed as
failed (app/monitor_lease.close_unreachable) and only a final, empty chunk is published so the ASR
finishes what it had. The new recorder rejoins HLS after the last segment stored
(app/monitor_resume.stored_resume_point).

Concurrency: one asyncio loop (the NATS connection, the lease round); recorders and audio followers run
on their own threads and publish through the loop (`run_coroutine_threadsafe`, waiting for the bus:
backpressure holds the follower, the disk is the buffer). On SIGTERM/SIGINT the recorders end their
connections (the broadcasts are ended and their final chunks published), then the leases are deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, func, or_, select

from alerts.evidence_worker import EvidenceWorker
from app import __version__
from app.bus_analyze import connect, ensure_video_stream
from app.bus_audio import ensure_audio_stream, publish_chunk
from app.bus_config import BusSection
from app.bus_video import BusVideo, publish_video
from app.bus_wire import AudioChunk, VideoMessage, subject_token
from app.live_evidence import LiveEvidence
from app.live_ingest import broadcast_end_row, log_ended, segment_row
from app.monitor_config import MonitorConfig, StreamEntry
from app.monitor_lease import LeaseKeeper, close_unreachable
from app.monitor_resume import stored_resume_point
from app.webhooks import WebhookDelivery
from ingest.tail import AudioFollower
from ingest.types import BroadcastEnded, BroadcastStarted, IngestState, RecorderResume, SegmentRecorded
from ingest.worker import IngestWorker, RecorderSpec
from store.db import Database
from store.live import LiveStore, rescan_segments
from store.models import AlertRow, Broadcast, MediaSegmentRow
from store.paths import resolve_stored
from store.writer import DbWriter

__all__ = ["CHUNK_S", "LEASES", "AudioChunker", "IngestRunner", "run_ingest_worker"]

logger = logging.getLogger(__name__)

LEASES = "LW_INGEST_LEASES"
CHUNK_S = 0.25  # seconds of audio a chunk (8 KB): the follower hands audio in 0.1 s pieces, and a line
# ending mid-chunk waits for the chunk to fill; 1 s chunks added about half a second to every alert
SAMPLE_RATE = 16_000
EVIDENCE_SWEEP_S = 2.0  # how often the store is asked for alerts of this worker's broadcasts to cut
PUBLISH_TIMEOUT_S = 3600.0  # a follower waits this long for room on the bus before giving up
VIDEO_DRAIN_S = 120.0  # a clean stop waits this long for the video read here to be published
FINAL_SEQ = 1 << 40  # the final chunk's seq when the audio of a taken-over broadcast is out of reach


class AudioChunker:
    """Float samples on a broadcast's clock in, `AudioChunk`s of `chunk_s` out (to `emit`), numbered from 0.

    A chunk holds contiguous samples; where the decoded audio jumps (the follower places audio by the
    packets' timestamps) the chunk in hand is sent short and the next starts at the new place. The same
    audio in the same pieces gives the same chunks: ids are deterministic. Not thread-safe (one follower).
    """

    def __init__(
        self,
        broadcast_id: str,
        stream_id: str,
        emit: Callable[[AudioChunk], None],
        chunk_s: float = CHUNK_S,
        started_ts: float | None = None,
    ) -> None:
        self.broadcast_id = broadcast_id
        self.stream_id = stream_id
        self.emit = emit
        self.size = max(1, round(chunk_s * SAMPLE_RATE))
        self.seq = 0
        self._parts: list[np.ndarray] = []
        self._n = 0
        self._start: float | None = None
        self.end_s = 0.0  # end of the audio taken so far
        self.finished = False
        # the broadcast's wall clock at start_s = 0, sent with every chunk (the ingest refines it as
        # files arrive: IngestRunner.segment_recorded); a float written by one thread, read by another
        self.started_ts = started_ts

    def add(self, start_s: float, samples: np.ndarray) -> None:
        if self.finished:
            raise RuntimeError(f"broadcast {self.broadcast_id}: audio after the final chunk")
        pcm = np.clip(np.asarray(samples, dtype=np.float32) * 32768.0, -32768, 32767).astype("<i2")
        if self._start is not None and abs(start_s - (self._start + self._n / SAMPLE_RATE)) > 0.05:
            self._flush(self._n)  # a jump in the audio: the chunk in hand goes out short
        if self._start is None:
            self._start = start_s
        self._parts.append(pcm)
        self._n += pcm.size
        self.end_s = max(self.end_s, start_s + pcm.size / SAMPLE_RATE)
        while self._n >= self.size:
            self._flush(self.size)

    def finish(self, end_s: float | None = None) -> None:
        """The final chunk: what is in hand (maybe nothing), marked final."""
        if self.finished:
            return
        self.finished = True
        start = self._start if self._start is not None else (self.end_s if end_s is None else end_s)
        data = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype="<i2")
        self._parts, self._n, self._start = [], 0, None
        self.emit(self._chunk(start, data, final=True))

    def _flush(self, n: int) -> None:
        if n <= 0 or self._start is None:
            return
        data = np.concatenate(self._parts)
        head, rest = data[:n], data[n:]
        self.emit(self._chunk(self._start, head, final=False))
        self._start = self._start + n / SAMPLE_RATE if rest.size else None
        self._parts = [rest] if rest.size else []
        self._n = int(rest.size)

    def refine_start(self, recorded_ts: float, end_s: float) -> float | None:
        """A file ending at `end_s` was recorded at `recorded_ts`. A file cannot arrive before it was
        broadcast, so the earliest (arrival - end) is the best estimate of when start_s = 0 was live, as
        in the in-process monitor (AsrWorker.refine_start). Chunks sent from now on carry it, so the ASR
        worker's lag and the alerts' wall-clock times follow the live clock rather than the moment the
        recorder connected. The new estimate when this file moved it (by 0.2 s or more), else None."""
        estimate = recorded_ts - end_s
        if self.started_ts is None or estimate >= self.started_ts - 0.2:
            return None
        self.started_ts = estimate
        return estimate

    def _chunk(self, start_s: float, pcm: np.ndarray, *, final: bool) -> AudioChunk:
        c = AudioChunk(
            self.broadcast_id,
            self.stream_id,
            self.seq,
            float(start_s),
            pcm.tobytes(),
            SAMPLE_RATE,
            final,
            started_ts=self.started_ts,
        )
        self.seq += 1
        return c


def hook_scope(worker: str, streams: list[str]) -> ColumnElement[bool]:
    """The alerts whose webhooks an ingest worker posts: those of the broadcasts it owns once their
    evidence is settled (cut, or failed), and those of failed broadcasts on the streams it holds now,
    whose evidence nobody will cut (a dead worker's recordings out of reach here: `take_over` leaves them
    its owner)."""
    mine = select(Broadcast.id).where(Broadcast.owner == worker)
    failed = select(Broadcast.id).where(
        Broadcast.status == "failed",
        or_(Broadcast.owner == worker, Broadcast.stream_id.in_(streams)),
    )
    return or_(
        and_(AlertRow.evidence_status != "pending", AlertRow.broadcast_id.in_(mine)),
        AlertRow.broadcast_id.in_(failed),
    )


@dataclass(slots=True)
class _Held:
    """A stream this worker holds the lease of, and records."""

    entry: StreamEntry
    token: str
    revision: int
    worker: IngestWorker | None = None
    state: str = "claimed"


@dataclass(slots=True)
class _Follow:
    follower: AudioFollower
    chunker: AudioChunker
    done: threading.Event = field(default_factory=threading.Event)


class IngestRunner:
    """One `livewatch worker ingest` process; see the module docstring. Also the recorders' port
    (`IngestPort`): its event methods run on the recorders' threads."""

    def __init__(self, cfg: MonitorConfig, db: Database, data_dir: Path, *, name: str | None = None) -> None:
        if cfg.bus is None:
            raise ValueError("the ingest worker needs a bus")
        self.cfg = cfg
        self.bus: BusSection = cfg.bus
        self.db = db
        self.data_dir = Path(data_dir)
        self.rec_root = self.data_dir / "recordings"
        self.name = name or f"ingest-{socket.gethostname()}-{os.getpid()}"
        self.entries = {e.id: e for e in cfg.streams_resolved()}
        self.writer = DbWriter(db)
        # this worker's liveness mirrored in the store (monitor_leases, as a monitor instance's): `livewatch
        # status` and /metrics show each stream's live broadcast with the worker and host serving it
        ttl = self.bus.ingest_lease_s
        self.lease = LeaseKeeper(db, self.name, self.data_dir, ttl_s=ttl, heartbeat_s=max(0.2, ttl / 3))
        self.held: dict[str, _Held] = {}
        self._follows: dict[str, _Follow] = {}
        # _follows; held (written by the loop, read by the recorder and evidence threads)
        self._lock = threading.Lock()
        self.stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.js: Any = None
        self.kv: Any = None
        self.chunks = 0
        self.taken_over: list[str] = []  # broadcasts of dead workers this one closed
        self.video = BusVideo(cfg, db, self.writer, self._emit_video)  # frames read here, batches out
        # the webhooks of the alerts whose evidence is cut here (see the module docstring, "Webhooks")
        self.webhooks = (
            WebhookDelivery(db, cfg.webhooks, write=self.writer.call, scope=self.hook_scope)
            if cfg.webhooks
            else None
        )
        port = LiveEvidence(
            cfg.alerts,
            db,
            self.writer,
            rolls=self._rolls,
            recording=self.recording,
            webhooks=lambda: self.webhooks,
            owner=self.name,
            unowned=False,  # only what this worker recorded: its files are here
        )
        self.evidence = EvidenceWorker(
            cfg.alerts,
            port,
            evidence_root=self.data_dir / "evidence",
            tmp_dir=self.data_dir / "tmp",
            tool_version=__version__,
            sweep_s=EVIDENCE_SWEEP_S,
        )

    # -- the recorders' port (their threads) -----------------------------------------------------------

    def resume_point(self, stream_id: str) -> RecorderResume | None:
        return stored_resume_point(self.db, stream_id)

    def broadcast_started(self, event: BroadcastStarted) -> None:
        entry = self.entries[event.stream_id]
        self.writer.call(
            partial(
                LiveStore.start_broadcast,
                broadcast_id=event.broadcast_id,
                stream_id=event.stream_id,
                url=event.source,
                name=entry.name or entry.id,
                folder=event.dir,
                started_ts=event.started_ts,
                source_start_s=event.source_start_s,
                rules_version="",
                video=self.video.keeps(entry),  # read here: the broadcast is done when its video is too
                media_gap_s=event.media_gap_s,
                hls_join=event.hls_join.as_dict() if event.hls_join is not None else None,
                owner=self.name,
            )
        )
        if self.video.keeps(entry):
            self.video.opened(event.broadcast_id, event.stream_id)
        held = self.held.get(event.stream_id)
        worker = held.worker if held is not None else None

        def done() -> bool:
            rec = worker.recording(event.broadcast_id) if worker is not None else None
            return rec is None or rec[1]

        self._follow(event.broadcast_id, event.stream_id, Path(event.dir), done, started_ts=event.started_ts)
        logger.info("stream %s: broadcast %s started", event.stream_id, event.broadcast_id)

    def segment_recorded(self, event: SegmentRecorded) -> None:
        self.writer.submit(segment_row(event))
        seg = event.segment
        with self._lock:
            f = self._follows.get(seg.broadcast_id)
        if f is not None and (ts := f.chunker.refine_start(event.recorded_ts, seg.end_s)) is not None:
            self.writer.submit(partial(LiveStore.refine_start, broadcast_id=seg.broadcast_id, started_ts=ts))
        self.video.file(event.segment)  # after its row: a file the video queue leaves out is read back

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        # committed before the recorder says it is over: the final chunk follows the row's end
        self.writer.call(broadcast_end_row(event))
        self.video.end(event.broadcast_id)
        log_ended(event)

    def state_changed(self, event: IngestState) -> None:
        with self._lock:
            held = self.held.get(event.stream_id)
            if held is not None:
                held.state = event.state

    # -- audio -----------------------------------------------------------------------------------------

    def _emit(self, chunk: AudioChunk) -> None:
        """Publish a chunk from a follower's thread, waiting for the bus (backpressure)."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(publish_chunk(self.js, chunk, PUBLISH_TIMEOUT_S), self.loop)
        fut.result()
        self.chunks += 1

    def _emit_video(self, msg: VideoMessage) -> None:
        """Publish a video batch from the video thread, waiting for the bus (backpressure)."""
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(publish_video(self.js, msg, PUBLISH_TIMEOUT_S), self.loop).result()

    def _follow(
        self,
        broadcast_id: str,
        stream_id: str,
        folder: Path,
        done: Callable[[], bool],
        started_ts: float | None = None,
    ) -> _Follow:
        chunker = AudioChunker(broadcast_id, stream_id, self._emit, started_ts=started_ts)
        holder: list[_Follow] = []

        def on_end(reason: str) -> None:
            try:
                if reason != "stopped":
                    if reason != "end of recording":
                        logger.error(
                            "audio of broadcast %s ended: %s; its last chunk is sent", broadcast_id, reason
                        )
                    chunker.finish()
                    logger.info(
                        "broadcast %s: %d audio chunk(s) (%.1f s) published",
                        broadcast_id,
                        chunker.seq,
                        chunker.end_s,
                    )
            except Exception:
                logger.exception("final audio chunk of broadcast %s not published", broadcast_id)
            finally:
                holder[0].done.set()
                with self._lock:
                    self._follows.pop(broadcast_id, None)

        follower = AudioFollower(
            folder,
            recording_done=done,
            on_audio=chunker.add,
            on_end=on_end,
            name=broadcast_id,
        )
        f = _Follow(follower, chunker)
        holder.append(f)
        with self._lock:
            self._follows[broadcast_id] = f
        follower.start()
        return f

    # -- evidence --------------------------------------------------------------------------------------

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        with self._lock:
            helds = list(self.held.values())
        for held in helds:
            if held.worker is not None:
                rec = held.worker.recording(broadcast_id)
                if rec is not None:
                    return rec
        return None

    def _rolls(self, stream_id: str) -> tuple[float, float, str | None] | None:
        entry = self.entries.get(stream_id)
        if entry is None:
            return None
        pre, post = self.cfg.pre_post_roll(entry)
        return pre, post, entry.name

    # -- webhooks --------------------------------------------------------------------------------------

    def hook_scope(self) -> ColumnElement[bool]:
        """The alerts whose webhooks this worker posts (the delivery thread, each round): `hook_scope`."""
        with self._lock:
            streams = list(self.held)
        return hook_scope(self.name, streams)

    # -- takeover (a thread) ---------------------------------------------------------------------------

    def take_over(self, stream_id: str) -> None:
        """Close what other (dead) workers left live on this stream; see the module docstring."""
        with self.db.session() as s:
            rows = s.scalars(
                select(Broadcast).where(
                    Broadcast.stream_id == stream_id,
                    Broadcast.kind == "live",
                    Broadcast.status == "live",
                    (Broadcast.owner != self.name) | Broadcast.owner.is_(None),
                )
            ).all()
            todo = []
            for b in rows:
                end_s, last_ts = s.execute(
                    select(
                        func.max(MediaSegmentRow.start_s + MediaSegmentRow.duration_s),
                        func.max(MediaSegmentRow.created_ts),
                    ).where(MediaSegmentRow.broadcast_id == b.id)
                ).one()
                end_s = float(end_s or 0.0)
                ended_ts = (
                    float(last_ts) if last_ts is not None else float(b.started_ts or time.time()) + end_s
                )
                folder = resolve_stored(b.folder, self.db.data_dir) if b.folder else None
                todo.append((b.id, b.owner, end_s, ended_ts, folder))
        for bid, owner, end_s, ended_ts, folder in todo:
            reachable = folder is not None and Path(folder).is_dir()
            reason = (
                f"ingest worker {owner or '?'} stopped renewing its lease; stream taken over by {self.name}"
            )

            def tx(s: Any, bid: str = bid, end_s: float = end_s, ended_ts: float = ended_ts,
                   folder: Path | None = folder, reason: str = reason) -> float:  # fmt: skip
                b = s.get(Broadcast, bid, with_for_update=True)
                if b is None or b.status != "live":
                    return end_s
                if folder is not None and Path(folder).is_dir():
                    # as the monitor closes an interrupted broadcast at restart (app/monitor_resume.py):
                    # the files the dead worker wrote and never registered are registered first
                    end_s = max(end_s, rescan_segments(s, bid, Path(folder)))
                    s.flush()
                    last = s.scalar(select(func.max(MediaSegmentRow.created_ts)).where(
                        MediaSegmentRow.broadcast_id == bid))  # fmt: skip
                    LiveStore.end_broadcast(
                        s, bid, float(last) if last is not None else ended_ts, end_s, reason
                    )
                    b.owner = self.name  # its alerts' evidence is cut here
                else:
                    close_unreachable(s, bid, reason + " (its recordings are not reachable here)", ended_ts)
                return end_s

            end_s = self.writer.call(tx)
            self.taken_over.append(bid)
            logger.warning(
                "stream %s: broadcast %s of %s closed at %.1f s (%s)", stream_id, bid, owner, end_s, reason
            )
            if reachable:
                assert folder is not None
                self.video.resume(bid, stream_id)
                f = self._follow(bid, stream_id, Path(folder), lambda: True)
                f.done.wait()
            else:
                self._emit(AudioChunk(bid, stream_id, FINAL_SEQ, end_s, b"", SAMPLE_RATE, True))

    # -- leases (the loop) -----------------------------------------------------------------------------

    def _lease_value(self, held: _Held) -> bytes:
        return json.dumps(
            {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(), "state": held.state}
        ).encode()

    async def _round(self) -> None:
        for held in list(self.held.values()):
            try:
                held.revision = await self.kv.update(held.token, self._lease_value(held), last=held.revision)
            except Exception:
                logger.error("lease of stream %s lost; its recorder stops", held.entry.id)
                with self._lock:
                    self.held.pop(held.entry.id, None)
                if held.worker is not None:
                    await asyncio.to_thread(held.worker.stop)
        for sid, entry in self.entries.items():
            if sid in self.held or len(self.held) >= self.bus.ingest_max_streams:
                continue
            await self._claim(entry)

    async def _claim(self, entry: StreamEntry) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        token = subject_token(entry.id)
        held = _Held(entry, token, 0)
        try:
            held.revision = await self.kv.create(token, self._lease_value(held))
        except KeyWrongLastSequenceError:
            return  # another worker records it
        with self._lock:
            self.held[entry.id] = held
        t0 = time.monotonic()
        await asyncio.to_thread(self.take_over, entry.id)
        if self.webhooks is not None:
            self.webhooks.wake()  # what the adopted broadcasts still had due
        spec = RecorderSpec(entry.id, entry.url, entry, entry.keeps_video(self.cfg.video.enabled))
        held.worker = IngestWorker([spec], self, self.rec_root)
        await asyncio.to_thread(held.worker.start)
        held.state = "recording"
        logger.info(
            "stream %s claimed (lease %s, %.1f s to take over) and recording",
            entry.id,
            LEASES,
            time.monotonic() - t0,
        )

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        from nats.js.api import KeyValueConfig

        self.loop = asyncio.get_running_loop()
        nc = await connect(self.bus, f"livewatch-{self.name}")
        await asyncio.to_thread(self.lease.take)
        self.lease.start()
        self.writer.start()
        self.evidence.start()
        if self.webhooks is not None:
            self.webhooks.start()
        try:
            self.js = nc.jetstream()
            await ensure_audio_stream(self.js, self.bus)
            await ensure_video_stream(self.js, self.bus)
            self.video.start()
            try:
                self.kv = await self.js.create_key_value(
                    KeyValueConfig(bucket=LEASES, ttl=self.bus.ingest_lease_s)
                )
            except Exception as e:  # made by a worker with another lease time: theirs holds
                if "already in use" not in str(e):
                    raise
                self.kv = await self.js.key_value(LEASES)
            logger.info(
                "ingest worker %s: %d stream(s) configured, lease %.1f s, on %s",
                self.name,
                len(self.entries),
                self.bus.ingest_lease_s,
                self.bus.url,
            )
            if ready is not None:
                ready()
            every = max(0.2, self.bus.ingest_lease_s / 3)
            while not self.stop.is_set():
                try:
                    await self._round()
                except Exception:  # the bus is away for a moment: leases lapse only after the TTL
                    logger.exception("lease round failed; retrying")
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=every)
                except TimeoutError:
                    pass
        finally:
            await self._shutdown(nc)

    async def _shutdown(self, nc: Any) -> None:
        workers = [h.worker for h in self.held.values() if h.worker is not None]
        renew = asyncio.create_task(self._keep_leases())
        try:  # recorders end their connections: broadcasts ended, final chunks published
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
            with self._lock:
                follows = list(self._follows.values())
            await asyncio.gather(*(asyncio.to_thread(f.done.wait, 30.0) for f in follows))
            await asyncio.to_thread(self.video.drain, VIDEO_DRAIN_S)  # the final video batches out
        finally:
            renew.cancel()
        for held in list(self.held.values()):
            try:
                await self.kv.delete(held.token, last=held.revision)
            except Exception:
                logger.info("lease of %s not released (it expires)", held.entry.id, exc_info=True)
        with self._lock:
            self.held.clear()
        self.video.stop()
        self.evidence.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.writer.stop()
        await asyncio.to_thread(self.lease.release)
        try:
            await nc.flush(timeout=2)
        except Exception:
            logger.info("bus connection lost before closing", exc_info=True)
        await nc.close()

    async def _keep_leases(self) -> None:
        every = max(0.2, self.bus.ingest_lease_s / 3)
        while True:
            await asyncio.sleep(every)
            for held in list(self.held.values()):
                try:
                    held.revision = await self.kv.update(
                        held.token, self._lease_value(held), last=held.revision
                    )
                except Exception:
                    logger.debug("lease of %s not renewed while stopping", held.entry.id, exc_info=True)


async def run_ingest_worker(runner: IngestRunner, *, ready: Callable[[], None] | None = None) -> None:
    """Claim streams, record them and publish their audio until SIGTERM/SIGINT (or `runner.stop`)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, runner.stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    await runner.run(ready)
