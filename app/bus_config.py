"""The `bus:` section of the root config: where the NATS JetStream bus is, and its delivery settings.

Without `bus:` everything runs in one process (`livewatch monitor`, the embedded default). With it,
stages can run as their own processes (`livewatch worker analyze`). `bus: nats://HOST:4222` is short for
`bus: {url: nats://HOST:4222}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BusSection"]


class BusSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        ...,
        pattern=r"^(nats|tls)://\S+$",
        description="NATS server with JetStream on, e.g. nats://10.0.0.5:4222 (several: comma-separated).",
    )
    ack_wait_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A batch a worker took and did not acknowledge within this long (it died, or hangs) is "
        "delivered again to any worker. Longer than the slowest batch's analysis.",
    )
    max_ack_pending: int = Field(
        64,
        ge=1,
        description="Batches handed out and not yet acknowledged, all analyze workers together: the "
        "bus stops handing out more (backpressure) until some are acknowledged.",
    )
    retry_delay_s: float = Field(
        1.0,
        gt=0,
        description="A batch that arrives before the one it follows (or whose analysis failed) is given "
        "back and delivered again after this long.",
    )
    max_stream_bytes: int = Field(
        1 << 30,
        ge=1 << 20,
        description="Most bytes of transcripts the bus keeps waiting for analysis; past it, publishing is "
        "refused (the publisher waits and retries) instead of dropping older batches.",
    )

    asr_batch: int = Field(
        8,
        ge=1,
        le=64,
        description="ASR worker on a GPU: most windows (one per stream) decoded as one batch. On the CPU "
        "windows are decoded one at a time unless asr_batch_cpu is on (bench/asr_batch.md: a CPU batch "
        "gains nothing on the live path, and every line of a batch waits for the whole batch).",
    )
    asr_batch_cpu: bool = Field(
        False,
        description="ASR worker: batch windows (asr_batch) on the CPU too. Off: one window at a time, the "
        "stream furthest behind first, its lines stored and published at once, as the monitor does "
        "(bench/live_bus_and_scan.md: a batch of 5 CPU windows held each line about 1.5 s longer).",
    )
    asr_batch_wait_ms: float = Field(
        200.0,
        ge=0,
        description="ASR worker, batching: once one stream's window is ready, wait up to this long for "
        "others to fill the batch (latency traded for throughput); not once every stream it serves is ready.",
    )
    asr_max_streams: int = Field(
        16,
        ge=1,
        description="ASR worker: most streams one worker serves (claims); streams beyond wait on the bus "
        "for another worker, their lag growing in the log, never dropped.",
    )
    asr_admit_backlog_s: float = Field(
        20.0,
        ge=0,
        description="ASR worker: admission control. While any stream it serves has more than this many "
        "seconds of received audio not yet decoded (it is not keeping up), the worker claims no new "
        "stream: taking more would make every stream later. Waiting streams stay on the bus, are listed "
        "by `livewatch bus status` as waiting for ASR, and are claimed by a worker with room, or by this "
        "one once it has caught up. 0: claim up to asr_max_streams regardless.",
    )
    asr_lease_s: float = Field(
        15.0,
        gt=0,
        description="ASR worker: a stream's claim not renewed for this long (its worker died) may be "
        "taken by another worker, which resumes from the store.",
    )
    asr_max_buffered_s: float = Field(
        60.0,
        ge=20,
        description="ASR worker: most seconds of a stream's audio held in memory and not yet "
        "transcribed; past it the worker stops pulling that stream (the bus is the buffer).",
    )

    ingest_lease_s: float = Field(
        15.0,
        gt=0,
        description="Ingest worker: a stream's claim not renewed for this long (its worker died) may be "
        "taken by another ingest worker, which closes the dead one's broadcast with a gap and records on.",
    )
    ingest_max_streams: int = Field(
        64,
        ge=1,
        description="Ingest worker: most streams one worker records (claims); the rest wait for another.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


async def ensure_work_queue(js: Any, bus: BusSection, name: str, subjects: str) -> None:
    """A JetStream work-queue stream of this worker's kind (created, or brought to this config): file
    storage, at most `bus.max_stream_bytes`, new messages refused when full (the producer waits; nothing
    unprocessed is dropped), a 120 s duplicate window for republished ids."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    config = StreamConfig(
        name=name,
        subjects=[subjects],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_bytes=bus.max_stream_bytes,
        discard=DiscardPolicy.NEW,
        duplicate_window=120.0,
    )
    try:
        await js.add_stream(config)
    except Exception as e:  # exists with another config (limits changed): update it
        if "already in use" not in str(e):
            raise
        await js.update_stream(config)
