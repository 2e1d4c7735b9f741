"""`livewatch bus status`: every stream on the bus, who serves it and how far behind it is.

Read from the bus itself, so it shows the deployment as it is now, from any box that reaches the NATS
server, without a store:

- leases: every key of every KV bucket named ``LW_*_LEASES`` (the ASR workers' `LW_ASR_LEASES`; other
  stages' buckets, such as the ingest workers', appear under their own stage name). A lease's JSON value
  says which worker, host and process serve the stream and, for ASR, its lag behind live and its
  backlog of audio not decoded;
- work waiting: messages per stream subject on `LW_AUDIO` (audio chunks not yet acknowledged by an ASR
  worker) and on `LW_TRANSCRIPTS` (transcript batches not yet analysed);
- the analyze workers' shared consumer: batches pending and in flight.

A stream with audio waiting and no ASR lease is **waiting for ASR**: every ASR worker is full
(`bus.asr_max_streams`) or refusing new streams because it is behind (`bus.asr_admit_backlog_s`), or
none runs. Nothing on the bus is dropped; such a stream's lag grows until a worker has room.

Read-only: it creates no stream, bucket or consumer. Bounded: one connection attempt with a timeout,
and a clear error when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from app.bus_analyze import DURABLE
from app.bus_config import BusSection
from app.bus_wire import AUDIO_STREAM, AUDIO_SUBJECTS, TRANSCRIPTS_STREAM, TRANSCRIPTS_SUBJECTS

__all__ = ["BusStatus", "BusUnreachable", "StreamStatus", "bus_status", "lease_buckets", "summarize"]

LEASE_SUFFIX = "_LEASES"


class BusUnreachable(Exception):
    """The NATS server could not be reached (or has no JetStream)."""


@dataclass(slots=True)
class StreamStatus:
    token: str  # the stream id as a subject token (app/bus_wire.py subject_token)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> lease value
    audio_waiting: int = 0  # chunks on LW_AUDIO
    transcripts_waiting: int = 0  # batches on LW_TRANSCRIPTS
    state: str = "idle"


@dataclass(slots=True)
class BusStatus:
    url: str
    streams: list[StreamStatus]
    analyze_pending: int | None = None  # batches not yet handed to an analyze worker
    analyze_in_flight: int | None = None  # handed out, not acknowledged
    buckets: list[str] = field(default_factory=list)

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
    leases: dict[str, dict[str, dict[str, Any]]], audio: dict[str, int], transcripts: dict[str, int]
) -> list[StreamStatus]:
    """One row a stream from the leases (stage -> token -> value) and the messages waiting per token."""
    tokens = set(audio) | set(transcripts)
    for held in leases.values():
        tokens |= set(held)
    rows = []
    for t in sorted(tokens):
        row = StreamStatus(t, {stage: held[t] for stage, held in sorted(leases.items()) if t in held})
        row.audio_waiting = audio.get(t, 0)
        row.transcripts_waiting = transcripts.get(t, 0)
        if row.audio_waiting and "asr" not in row.leases:
            row.state = "waiting for ASR"
        elif row.leases or row.audio_waiting or row.transcripts_waiting:
            row.state = "served"
        rows.append(row)
    return rows


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


async def bus_status(bus: BusSection, *, timeout_s: float = 5.0) -> BusStatus:
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
        status = BusStatus(bus.url, summarize(leases, audio, transcripts), buckets=sorted(buckets))
        if TRANSCRIPTS_STREAM in names:
            try:
                ci = await js.consumer_info(TRANSCRIPTS_STREAM, DURABLE)
                status.analyze_pending, status.analyze_in_flight = ci.num_pending, ci.num_ack_pending
            except Exception:  # no analyze worker has run yet: nothing to show
                pass
        return status
    finally:
        await nc.close()


async def _stream_names(js: Any) -> Any:
    for info in await js.streams_info():
        yield info.config.name
