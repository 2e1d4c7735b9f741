"""Publishing a media file's audio on the bus in chunks: the stand-in for an ingest worker's output.

Until recorders run on the bus, this is how audio reaches the ASR workers (app/bus_asr.py): the file is
decoded by the project's ffmpeg (ingest/ffmpeg.py `pcm_args`: 16 kHz mono s16le on a pipe) and cut into
`AudioChunk`s of `chunk_s` (app/bus_wire.py) published on `lw.audio.<stream_id>` of the work-queue stream
`LW_AUDIO`. With `realtime` ffmpeg reads the file at its own speed (-re), as a live room would send it.

It does what a recorder does, in the same order: the broadcast's row first (`LiveStore.start_broadcast`,
as `livewatch bus publish` does), then the chunks; before the last chunk (marked `final`) the broadcast
is ended (`LiveStore.end_broadcast`), as a recorder ends it before ASR's final pass. Running it again
for the same file and stream is the same broadcast: JetStream (within its duplicate window) takes each
chunk once by its id, and the ASR worker skips audio it already transcribed.

Backpressure: when the stream is full (`bus.max_stream_bytes`, discard new) a publish is refused and
retried with a backoff until `timeout_s`; nothing queued is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bus_analyze import connect
from app.bus_config import BusSection, ensure_work_queue
from app.bus_publish import PublishOptions, _open_broadcast
from app.bus_wire import AUDIO_STREAM, AUDIO_SUBJECTS, AudioChunk, audio_subject, encode_audio
from ingest.ffmpeg import pcm_args
from store.db import Database
from store.live import LiveStore
from store.models import Broadcast

__all__ = [
    "AudioPublishOptions",
    "ensure_audio_stream",
    "media_broadcast_id",
    "publish_audio",
    "publish_chunk",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class AudioPublishOptions:
    stream_id: str
    broadcast_id: str
    started_ts: float
    chunk_s: float = 1.0
    realtime: bool = False
    url: str = ""  # what the broadcast row names as its source
    timeout_s: float = 60.0  # how long one chunk may wait for room on the bus


def media_broadcast_id(path: Path, stream_id: str) -> str:
    """A stable id for a published media file (publishing it again is the same broadcast)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return hashlib.sha256(f"bus-audio:{h.hexdigest()}:{stream_id}".encode()).hexdigest()[:16]


async def ensure_audio_stream(js: Any, bus: BusSection) -> None:
    """The work-queue stream of audio chunks (app/bus_config.ensure_work_queue)."""
    await ensure_work_queue(js, bus, AUDIO_STREAM, AUDIO_SUBJECTS)


async def publish_chunk(js: Any, chunk: AudioChunk, timeout_s: float) -> None:
    """One chunk on its stream's subject, with its id (a re-publish is stored once); waits for room."""
    from nats.js.errors import APIError

    data = encode_audio(chunk)
    subject = audio_subject(chunk.stream_id)
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            await js.publish(subject, data, headers={"Nats-Msg-Id": chunk.msg_id})
            return
        except APIError as e:  # the stream is full (discard new): wait for the ASR tier to catch up
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("bus refused audio chunk %s (%s); retrying in %.1f s", chunk.msg_id, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def publish_audio(bus: BusSection, db: Database, source: Path, opts: AudioPublishOptions) -> int:
    """Store the broadcast and publish the audio of `source` in chunks; the number of chunks."""
    if opts.chunk_s <= 0:
        raise ValueError("chunk_s must be positive")
    with db.session() as s, s.begin():
        _open_broadcast(
            s,
            db,
            PublishOptions(
                opts.stream_id,
                opts.broadcast_id,
                opts.started_ts,
                url=opts.url or f"bus-audio:{opts.broadcast_id}",
            ),
        )
    step = 2 * round(opts.chunk_s * SAMPLE_RATE)
    proc = await asyncio.create_subprocess_exec(
        *pcm_args(source, sample_rate=SAMPLE_RATE, realtime=opts.realtime),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    nc = await connect(bus, f"livewatch-publish-audio-{opts.broadcast_id}")
    seq = 0
    samples = 0
    try:
        js = nc.jetstream()
        await ensure_audio_stream(js, bus)
        held: bytes | None = None  # one chunk behind, so the last one can be marked final
        while True:
            try:
                data = await proc.stdout.readexactly(step)
            except asyncio.IncompleteReadError as e:
                data = e.partial
            if held is not None:
                await publish_chunk(js, _chunk(opts, seq, samples, held, final=False), opts.timeout_s)
                seq += 1
                samples += len(held) // 2
            held = data[: len(data) - len(data) % 2]
            if len(data) < step:
                break
        err = (await proc.stderr.read()).decode("utf-8", "replace").strip()
        if await proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not decode {source}: {err[-500:]}")
        end_s = (samples + len(held or b"") // 2) / SAMPLE_RATE
        with db.session() as s, s.begin():  # the recording is over before ASR's last pass
            b = s.get(Broadcast, opts.broadcast_id)
            if b is not None and b.status == "live":
                LiveStore.end_broadcast(
                    s, opts.broadcast_id, opts.started_ts + end_s, end_s, "audio published"
                )
        await publish_chunk(js, _chunk(opts, seq, samples, held or b"", final=True), opts.timeout_s)
        seq += 1
        logger.info(
            "published %d audio chunk(s) (%.1f s) of broadcast %s on %s",
            seq,
            end_s,
            opts.broadcast_id,
            audio_subject(opts.stream_id),
        )
        return seq
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await nc.drain()


def _chunk(opts: AudioPublishOptions, seq: int, samples: int, pcm: bytes, *, final: bool) -> AudioChunk:
    return AudioChunk(opts.broadcast_id, opts.stream_id, seq, samples / SAMPLE_RATE, pcm, SAMPLE_RATE, final)
