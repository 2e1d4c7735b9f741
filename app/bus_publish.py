"""Publishing a broadcast's transcript on the bus, in batches: the stand-in for the ASR worker's output.

Until the ASR worker itself is on the bus (its port wired to JetStream instead of the monitor's writer),
this is how transcripts reach the analyze workers: a stored or scanned transcript (the JSON that
`livewatch scan` and the ASR fixtures write: {"segments": [{"start_s", "end_s", "text", "words"}]})
cut into `TranscriptBatch`es of a few lines each, as live ASR passes would commit them.

It does what the monitor does for each ASR pass, in the same order: the broadcast's row (ingest's part,
`LiveStore.start_broadcast`), then per batch the lines and the ASR watermark in one transaction
(`LiveStore.store_transcript`: the ledger), then the batch on the bus (the doorbell); the broadcast is
ended before its last batch, as a recorder ends it before ASR's final pass. Running it again for the
same broadcast stores nothing twice and publishes the same batches with the same ids, which JetStream
(within its duplicate window) and the analyze workers (by `seq`) take once.

Backpressure: when the stream is full (`bus.max_stream_bytes`, discard new) a publish is refused and
retried with a backoff until `timeout_s`; nothing already queued is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.bus_analyze import connect, ensure_transcripts_stream
from app.bus_config import BusSection
from app.bus_wire import TranscriptMessage, encode_transcript, transcript_subject
from asr.types import TranscriptBatch, Utterance
from store.db import Database
from store.live import LiveStore
from store.models import Broadcast, UtteranceRow

__all__ = ["PublishOptions", "chunk_transcript", "publish_transcript", "transcript_broadcast_id"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishOptions:
    stream_id: str
    broadcast_id: str
    started_ts: float
    lines_per_batch: int = 3
    source_start_s: float | None = None
    url: str = ""  # what the broadcast row names as its source
    timeout_s: float = 60.0  # how long one batch may wait for room on the bus


def transcript_broadcast_id(path: Path, stream_id: str) -> str:
    """A stable id for a published transcript file (publishing it again is the same broadcast)."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return hashlib.sha256(f"bus:{digest}:{stream_id}".encode()).hexdigest()[:16]


def chunk_transcript(
    utterances: Sequence[Utterance], broadcast_id: str, stream_id: str, lines_per_batch: int
) -> list[TranscriptBatch]:
    """Batches of `lines_per_batch` lines in order of time. Each batch's watermark is where the next
    line starts (nothing committed later starts before it); the last is final at the last line's end."""
    if lines_per_batch < 1:
        raise ValueError("lines_per_batch must be at least 1")
    utts = sorted(utterances, key=lambda u: (u.start_s, u.index))
    out: list[TranscriptBatch] = []
    for i in range(0, len(utts), lines_per_batch):
        part = tuple(utts[i : i + lines_per_batch])
        nxt = utts[i + lines_per_batch] if i + lines_per_batch < len(utts) else None
        done_s = nxt.start_s if nxt is not None else max((u.end_s for u in utts), default=0.0)
        out.append(TranscriptBatch(broadcast_id, stream_id, part, done_s, nxt is None))
    if not out:
        out.append(TranscriptBatch(broadcast_id, stream_id, (), 0.0, True))
    return out


def _open_broadcast(s: Session, db: Database, opts: PublishOptions) -> None:
    if s.get(Broadcast, opts.broadcast_id) is not None:
        return
    folder = (db.data_dir or Path(".")) / "recordings" / opts.stream_id / opts.broadcast_id
    LiveStore.start_broadcast(
        s,
        broadcast_id=opts.broadcast_id,
        stream_id=opts.stream_id,
        url=opts.url or f"bus-transcript:{opts.broadcast_id}",
        name=opts.stream_id,
        folder=str(folder),
        started_ts=opts.started_ts,
        source_start_s=opts.source_start_s,
        rules_version="",
    )


def _store_batch(s: Session, batch: TranscriptBatch, ended_ts: float) -> None:
    """The batch's lines and watermark, unless a previous run stored them (then nothing)."""
    last = s.scalar(
        select(func.max(UtteranceRow.idx)).where(
            UtteranceRow.broadcast_id == batch.broadcast_id, UtteranceRow.source == "speech"
        )
    )
    fresh = [u for u in batch.utterances if last is None or u.index > last]
    if len(fresh) != len(batch.utterances) and fresh:
        raise RuntimeError(f"broadcast {batch.broadcast_id}: stored lines end inside a batch")
    if not fresh and batch.utterances:
        return
    if batch.final:  # the recording is over before ASR's last pass, as the recorder ends it
        b = s.get(Broadcast, batch.broadcast_id)
        if b is not None and b.status == "live":
            LiveStore.end_broadcast(s, batch.broadcast_id, ended_ts, batch.done_s, "transcript published")
    LiveStore.store_transcript(
        s,
        broadcast_id=batch.broadcast_id,
        utterances=batch.utterances,
        done_s=batch.done_s,
        final=batch.final,
    )


async def publish_transcript(
    bus: BusSection, db: Database, utterances: Sequence[Utterance], opts: PublishOptions
) -> int:
    """Store and publish a transcript in batches; the number of batches published."""
    batches = chunk_transcript(utterances, opts.broadcast_id, opts.stream_id, opts.lines_per_batch)
    with db.session() as s, s.begin():
        _open_broadcast(s, db, opts)
    nc = await connect(bus, f"livewatch-publish-{opts.broadcast_id}")
    try:
        js = nc.jetstream()
        await ensure_transcripts_stream(js, bus)
        subject = transcript_subject(opts.stream_id)
        for seq, batch in enumerate(batches):
            ended = opts.started_ts + batch.done_s
            with db.session() as s, s.begin():
                _store_batch(s, batch, ended)
            msg = TranscriptMessage(batch, seq, opts.started_ts, opts.source_start_s)
            await _publish(js, subject, msg, opts.timeout_s)
        logger.info("published %d batch(es) of broadcast %s on %s", len(batches), opts.broadcast_id, subject)
        return len(batches)
    finally:
        await nc.drain()


async def _publish(js: object, subject: str, msg: TranscriptMessage, timeout_s: float) -> None:
    from nats.js.errors import APIError

    data = encode_transcript(msg)
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg.msg_id})  # type: ignore[attr-defined]
            return
        except APIError as e:  # the stream is full (discard new): wait for the analysis to catch up
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("bus refused batch %s (%s); retrying in %.1f s", msg.msg_id, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
