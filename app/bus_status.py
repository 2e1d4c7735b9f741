"""`livewatch bus status`: every stream on the bus, who serves it and how far behind it is.

Read from the bus itself, so it shows the deployment as it is now, from any box that reaches the NATS
server, without a store (only the webhook counts, last below, come from the store, when it is there):

- leases: every key of every KV bucket named ``LW_*_LEASES`` (the ASR workers' `LW_ASR_LEASES`; other
  stages' buckets, such as the ingest workers', appear under their own stage name). A lease's JSON value
  says which worker, host and process serve the stream and, for ASR, its lag behind live and its
  backlog of audio not decoded;
- work waiting: messages per stream subject on `LW_AUDIO` (audio chunks not yet acknowledged by an ASR
  worker), on `LW_TRANSCRIPTS` (transcript batches not yet analysed) and on `LW_VIDEO` (video batches,
  read on the ingest boxes, not yet analysed);
- the analyze workers' shared consumer: batches pending and in flight;
- from the store, when the caller reads it (`webhook_backlog`; the CLI does when the config's database
  is there): webhook outbox rows per stream not delivered yet, split into **pending** (still to be
  tried by the ingest worker that owns the broadcast, app/bus_ingest.py) and **failed** (given up:
  `max_attempts` failed POSTs, or a URL the config no longer names), which wait for the operator.

A stream with audio waiting and no ASR lease is **waiting for ASR**: every ASR worker is full
(`bus.asr_max_streams`) or refusing new streams because it is behind (`bus.asr_admit_backlog_s`), or
none runs. Nothing on the bus is dropped; such a stream's lag grows until a worker has room.

Read-only: it creates no stream, bucket or consumer (nor a database). Bounded: one connection attempt
with a timeout, and a clear error when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from alerts.webhook import WebhookConfig
from app.bus_analyze import DURABLE, VIDEO_DURABLE
from app.bus_config import BusSection
from app.bus_wire import (
    AUDIO_STREAM,
    AUDIO_SUBJECTS,
    TRANSCRIPTS_STREAM,
    TRANSCRIPTS_SUBJECTS,
    VIDEO_STREAM,
    VIDEO_SUBJECTS,
    subject_token,
)
from store.db import Database
from store.models import AlertRow, WebhookOutbox

__all__ = [
    "BusStatus",
    "BusUnreachable",
    "StreamStatus",
    "bus_status",
    "given_up",
    "lease_buckets",
    "summarize",
    "webhook_backlog",
]

LEASE_SUFFIX = "_LEASES"


class BusUnreachable(Exception):
    """The NATS server could not be reached (or has no JetStream)."""


@dataclass(slots=True)
class StreamStatus:
    token: str  # the stream id as a subject token (app/bus_wire.py subject_token)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> lease value
    audio_waiting: int = 0  # chunks on LW_AUDIO
    transcripts_waiting: int = 0  # batches on LW_TRANSCRIPTS
    video_waiting: int = 0  # video batches on LW_VIDEO
    webhooks_pending: int | None = None  # outbox rows still to be tried (None: the store was not read)
    webhooks_failed: int | None = None  # outbox rows given up
    state: str = "idle"


@dataclass(slots=True)
class BusStatus:
    url: str
    streams: list[StreamStatus]
    analyze_pending: int | None = None  # batches not yet handed to an analyze worker
    analyze_in_flight: int | None = None  # handed out, not acknowledged
    video_pending: int | None = None  # video batches not yet handed to an analyze worker
    video_in_flight: int | None = None
    buckets: list[str] = field(default_factory=list)
    store: str | None = None  # the database the webhook counts were read from (None: not read)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def lease_buckets(names: list[str]) -> dict[str, str]:
    """KV bucket name -> stage name, for the buckets holding leases (``LW_ASR_LEASES`` -> ``asr``)."""
    out = {}
    for n in names:
        if n.startswith("LW_") and n.endswith(LEASE_SUFFIX) and len(n) > len("LW_") + len(LEASE_SUFFIX):
            out[n] = n[len("LW_") : -len(LEASE_SUFFIX)].lower()
    return out


def summarize(
    leases: dict[str, dict[str, dict[str, Any]]],
    audio: dict[str, int],
    transcripts: dict[str, int],
    video: dict[str, int] | None = None,
    webhooks: dict[str, tuple[int, int]] | None = None,
) -> list[StreamStatus]:
    """One row a stream from the leases (stage -> token -> value), the messages waiting per token and,
    when the store was read, its webhook rows (token -> (pending, failed); every row then has counts)."""
    video = video or {}
    tokens = set(audio) | set(transcripts) | set(video) | set(webhooks or {})
    for held in leases.values():
        tokens |= set(held)
    rows = []
    for t in sorted(tokens):
        row = StreamStatus(t, {stage: held[t] for stage, held in sorted(leases.items()) if t in held})
        row.audio_waiting = audio.get(t, 0)
        row.transcripts_waiting = transcripts.get(t, 0)
        row.video_waiting = video.get(t, 0)
        if webhooks is not None:
            row.webhooks_pending, row.webhooks_failed = webhooks.get(t, (0, 0))
        if row.audio_waiting and "asr" not in row.leases:
            row.state = "waiting for ASR"
        elif row.leases or row.audio_waiting or row.transcripts_waiting or row.video_waiting:
            row.state = "served"
        rows.append(row)
    return rows


def given_up(url: str, attempts: int, hooks: Sequence[WebhookConfig]) -> bool:
    """Whether an undelivered outbox row will not be tried again: its hook's `max_attempts` reached (the
    default where the config does not name the URL), or, with hooks configured, a URL no longer among
    them (a deliverer skips it). Pure."""
    by_url = {h.url: h for h in hooks}
    hook = by_url.get(url)
    if hook is None and hooks:
        return True
    limit = hook.max_attempts if hook is not None else WebhookConfig.model_fields["max_attempts"].default
    return attempts >= limit


def webhook_backlog(db: Database, hooks: Sequence[WebhookConfig]) -> dict[str, tuple[int, int]]:
    """Undelivered webhook outbox rows per stream token: (pending, failed), from the store. One grouped
    query (rows by stream, URL and attempts), so it stays cheap with many rows waiting."""
    with db.session() as s:
        groups = s.execute(
            select(AlertRow.stream_id, WebhookOutbox.url, WebhookOutbox.attempts, func.count())
            .join(AlertRow, AlertRow.id == WebhookOutbox.alert_id)
            .where(WebhookOutbox.delivered_ts.is_(None), AlertRow.stream_id.is_not(None))
            .group_by(AlertRow.stream_id, WebhookOutbox.url, WebhookOutbox.attempts)
        ).all()
    out: dict[str, tuple[int, int]] = {}
    for stream_id, url, attempts, n in groups:
        token = subject_token(str(stream_id))
        pending, failed = out.get(token, (0, 0))
        if given_up(url, attempts, hooks):
            failed += n
        else:
            pending += n
        out[token] = (pending, failed)
    return out


def _per_token(subjects: dict[str, int] | None) -> dict[str, int]:
    return {s.split(".", 2)[2]: n for s, n in (subjects or {}).items() if s.count(".") >= 2}


async def _subjects(js: Any, stream: str, flt: str) -> dict[str, int]:
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(stream, subjects_filter=flt)
    except NotFoundError:
        return {}
    return _per_token(info.state.subjects)


async def _read_bucket(js: Any, bucket: str) -> dict[str, dict[str, Any]]:
    from nats.js.errors import KeyNotFoundError, NoKeysError

    kv = await js.key_value(bucket)
    try:
        keys = await kv.keys()
    except NoKeysError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        try:
            entry = await kv.get(k)
        except KeyNotFoundError:  # released between the listing and the read
            continue
        try:
            value = json.loads(entry.value or b"{}")
        except ValueError:
            value = {"raw": (entry.value or b"").decode("utf-8", "replace")[:200]}
        out[k] = value if isinstance(value, dict) else {"value": value}
    return out


async def bus_status(
    bus: BusSection,
    *,
    timeout_s: float = 5.0,
    webhooks: dict[str, tuple[int, int]] | None = None,
    store: str | None = None,
) -> BusStatus:
    """The bus as it is now; `webhooks` (from `webhook_backlog`, read from `store`) joins each stream's
    webhook rows to its row."""
    import nats

    try:
        nc = await asyncio.wait_for(
            nats.connect(servers=bus.servers(), allow_reconnect=False, connect_timeout=timeout_s,
                         max_reconnect_attempts=0, name="livewatch-bus-status"),
            timeout=timeout_s + 1,
        )
    except Exception as e:  # every way of not getting there says the same to the user
        raise BusUnreachable(f"the bus at {bus.url} cannot be reached: {type(e).__name__}: {e}") from None
    try:
        js = nc.jetstream(timeout=timeout_s)
        try:
            names = [n async for n in _stream_names(js)]
        except Exception as e:
            raise BusUnreachable(f"the bus at {bus.url} answers but JetStream does not: {e}") from None
        buckets = lease_buckets([n[len("KV_") :] for n in names if n.startswith("KV_")])
        leases = {stage: await _read_bucket(js, b) for b, stage in sorted(buckets.items())}
        audio = await _subjects(js, AUDIO_STREAM, AUDIO_SUBJECTS)
        transcripts = await _subjects(js, TRANSCRIPTS_STREAM, TRANSCRIPTS_SUBJECTS)
        video = await _subjects(js, VIDEO_STREAM, VIDEO_SUBJECTS)
        rows = summarize(leases, audio, transcripts, video, webhooks)
        status = BusStatus(bus.url, rows, buckets=sorted(buckets), store=store if webhooks is not None else None)
        if TRANSCRIPTS_STREAM in names:
            try:
                ci = await js.consumer_info(TRANSCRIPTS_STREAM, DURABLE)
                status.analyze_pending, status.analyze_in_flight = ci.num_pending, ci.num_ack_pending
            except Exception:  # no analyze worker has run yet: nothing to show
                pass
        if VIDEO_STREAM in names:
            try:
                ci = await js.consumer_info(VIDEO_STREAM, VIDEO_DURABLE)
                status.video_pending, status.video_in_flight = ci.num_pending, ci.num_ack_pending
            except Exception:  # no analyze worker has read video yet
                pass
        return status
    finally:
        await nc.close()


async def _stream_names(js: Any) -> Any:
    for info in await js.streams_info():
        yield info.config.name
