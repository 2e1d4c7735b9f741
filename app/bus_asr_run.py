"""`livewatch worker asr`: the JetStream side of the ASR stage (app/bus_asr.py holds the decoding side).

Placement: a worker serves a stream only while it holds the stream's lease, a key of the KV bucket
`LW_ASR_LEASES` (bucket TTL `bus.asr_lease_s`, renewed every third of it with a compare-and-set on the
key's revision). Every second the worker lists the audio subjects with chunks waiting
(`stream_info(subjects_filter)`) and claims (KV create: only if absent) those nobody holds, up to
`bus.asr_max_streams`. For a claimed stream it (re)creates the stream's durable pull consumer
(`asr_<stream>`, filtered on `lw.audio.<stream>`), so delivery restarts in order at the oldest chunk
not acknowledged: a broadcast's chunks reach one worker, in order. A worker that dies stops renewing;
after the lease time another worker claims the stream and carries on from the store (app/bus_asr.py).
The lease's value says who serves the stream and how far behind it is (JSON: worker, host, pid, lag
behind live, backlog of audio not decoded); `livewatch bus status` reads it.

Admission control: a worker claims no new stream while any stream it serves has more than
`bus.asr_admit_backlog_s` of received audio not decoded (it is not keeping up; another stream would
make every stream later). The waiting stream's audio stays on the bus (bounded by `max_stream_bytes`:
the producer waits), it is shown as waiting for ASR by `livewatch bus status` and warned about in
this worker's log, and it is claimed by a worker with room; nothing is dropped.

Flow control and memory: a stream is pulled only while its broadcast holds less than
`bus.asr_max_buffered_s` of audio not yet transcribed, so a slow worker leaves the audio on the bus
(`max_stream_bytes`, discard new: the producer waits) rather than in memory. Chunks held are kept
alive (`in_progress`) and acknowledged once the batch whose watermark passed their end was stored and
published.

Batching (a GPU, or `bus.asr_batch_cpu`): when a window is ready the decode loop waits up to
`bus.asr_batch_wait_ms` for more (or until `bus.asr_batch` are ready),
picks the broadcasts furthest behind, and decodes them as one batch on a thread (the loop keeps
pulling, renewing and answering meanwhile). On the CPU it decodes one window at a time, the broadcast
furthest behind first, and stores and publishes its lines before the next, as the monitor's ASR worker
does: a CPU batch decodes no more windows a second on the live path, and holds every line of the batch
until the last window is done (bench/asr_batch.md, bench/live_bus_and_scan.md). Lag per stream is logged every
`LAG_LOG_S`, and as a warning every `LAG_LOUD_EVERY_S` while a stream has more than `LAG_WARN_S` of
received audio not decoded.

Concurrency: one asyncio loop; one decode thread at a time (`asyncio.to_thread` of `BusAsr.decode` and
`commit`, awaited before the next). On SIGTERM/SIGINT the worker stops pulling, finishes the batch in
hand (stored, published, acknowledged), releases its leases (deletes the keys) and exits; what it held
and had not transcribed is delivered again to whoever claims the stream next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.bus_analyze import connect, ensure_transcripts_stream
from app.bus_asr import BroadcastAsr, BusAsr, Held, StaleBatch
from app.bus_audio import ensure_audio_stream
from app.bus_config import BusSection
from app.bus_wire import (
    AUDIO_STREAM,
    AUDIO_SUBJECTS,
    TranscriptMessage,
    WireError,
    decode_audio,
    encode_transcript,
    stored_ts,
    subject_token,
    transcript_subject,
)

__all__ = ["LEASES", "run_asr_worker"]

logger = logging.getLogger(__name__)

PULL_MAX = 16  # chunks taken from a stream's consumer in one pull
PULL_WAIT_S = 1.0  # how long one pull waits for the first chunk (then the loop checks `stop`)
DRAIN_WAIT_S = 0.02  # how long the drain after it lingers for chunks not yet on the server


async def pull_available(sub: Any, most: int, *, wait_s: float = PULL_WAIT_S) -> list[Any]:
    """The next chunk, as soon as it is on the server, plus what is already waiting behind it (up to
    `most`). One `fetch(most, timeout)` would hold a chunk that arrives mid-wait until the timeout runs
    out, waiting for the batch to fill: with live audio arriving one chunk a second per stream that
    added half a second on average to every line's latency. Raises the client's timeout error when
    nothing came within `wait_s`."""
    import nats.errors

    first = await sub.fetch(1, timeout=wait_s)
    if most <= 1:
        return list(first)
    try:
        rest = await sub.fetch(most - 1, timeout=DRAIN_WAIT_S)
    except (nats.errors.TimeoutError, TimeoutError):
        rest = []
    except asyncio.CancelledError:
        raise
    except Exception:  # the chunk in hand is kept; what waits behind it comes with the next pull
        logger.debug("draining a stream's consumer failed", exc_info=True)
        rest = []
    return list(first) + list(rest)


LEASES = "LW_ASR_LEASES"
LAG_LOG_S = 10.0
LAG_WARN_S = 10.0
LAG_LOUD_EVERY_S = 2.0  # how often a stream more than LAG_WARN_S behind is warned about
IDLE_RELEASE_S = 30.0  # a stream with nothing to do this long is given back (its lease deleted)
MAX_ACK_PENDING = 4096  # chunks handed to a stream's worker and not acknowledged (memory: max_buffered_s)


@dataclass(slots=True)
class _Stream:
    """A stream this worker holds the lease of."""

    token: str
    revision: int
    sub: Any = None
    task: asyncio.Task[None] | None = None
    waiting: list[Any] = field(default_factory=list)  # chunks whose broadcast is not stored yet
    lag_s: float = 0.0
    behind_s: float = 0.0  # received audio not decoded yet (the worker's backlog for this stream)
    idle_since: float | None = None


class AsrRunner:
    def __init__(self, asr: BusAsr, bus: BusSection, *, name: str) -> None:
        self.asr = asr
        self.bus = bus
        self.name = name
        self.streams: dict[str, _Stream] = {}
        self.bell = asyncio.Event()
        self.stop = asyncio.Event()
        self.js: Any = None
        self.kv: Any = None
        self._last_lag_log = 0.0
        self._last_refusal_log = 0.0

    # -- leases --------------------------------------------------------------------------------------

    def _lease_value(self, st: _Stream) -> bytes:
        return json.dumps(
            {
                "worker": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "lag_s": round(st.lag_s, 1),
                "backlog_s": round(st.behind_s, 1),
            }
        ).encode()

    async def _claim(self, token: str) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import KeyWrongLastSequenceError

        st = _Stream(token, 0)
        try:
            st.revision = await self.kv.create(token, self._lease_value(st))
        except KeyWrongLastSequenceError:
            return  # another worker holds it
        durable = f"asr_{token}"
        try:  # restart delivery at the oldest chunk not acknowledged, in order
            await self.js.delete_consumer(AUDIO_STREAM, durable)
        except Exception:
            logger.debug("no consumer %s to delete", durable, exc_info=True)
        await self.js.add_consumer(
            AUDIO_STREAM,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.bus.ack_wait_s,
                max_ack_pending=MAX_ACK_PENDING,
                max_deliver=-1,
                filter_subject=f"lw.audio.{token}",
            ),
        )
        st.sub = await self.js.pull_subscribe_bind(durable, stream=AUDIO_STREAM)
        st.task = asyncio.create_task(self._feed(st))
        self.streams[token] = st
        logger.info("stream %s claimed (lease %s, consumer %s)", token, LEASES, durable)

    async def _release(self, st: _Stream, *, lost: bool) -> None:
        self.streams.pop(st.token, None)
        if st.task is not None:
            st.task.cancel()
        for bid in [b for b, a in self.asr.broadcasts.items() if subject_token(a.stream_id) == st.token]:
            self.asr.drop(bid)  # its held chunks are delivered again to the next holder
        if not lost:
            try:
                await self.kv.delete(st.token, last=st.revision)
            except Exception:
                logger.info("lease of %s not released (it expires)", st.token, exc_info=True)

    async def _leases(self) -> None:
        every = max(0.2, self.bus.asr_lease_s / 3)
        last_renew = time.monotonic()
        while not self.stop.is_set():
            try:
                if time.monotonic() - last_renew >= every:
                    last_renew = time.monotonic()
                    await self._renew()
                await self._discover()
            except Exception:  # the bus is away for a moment: leases lapse only after asr_lease_s
                logger.exception("lease round failed; retrying")
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=min(1.0, every))
            except TimeoutError:
                pass

    async def _renew(self) -> None:
        for st in list(self.streams.values()):
            try:
                st.revision = await self.kv.update(st.token, self._lease_value(st), last=st.revision)
            except Exception:
                logger.error("lease of stream %s lost; its audio goes to another worker", st.token)
                await self._release(st, lost=True)

    async def _discover(self) -> None:
        """Claim the streams with audio waiting that nobody serves, up to asr_max_streams."""
        info = await self.js.stream_info(AUDIO_STREAM, subjects_filter=AUDIO_SUBJECTS)
        pending = {subject.split(".", 2)[2] for subject in (info.state.subjects or {})}
        await self._release_idle(pending)
        waiting = sorted(pending - set(self.streams))
        worst = self._full_by_backlog()
        if waiting and worst is not None:
            await self._refuse(waiting, worst)
            return
        for token in waiting:
            if len(self.streams) >= self.bus.asr_max_streams:
                logger.warning(
                    "stream %s has audio waiting and this worker serves %d streams already (the most); "
                    "it waits for another ASR worker",
                    token,
                    len(self.streams),
                )
                break
            try:
                await self._claim(token)
            except Exception:
                logger.exception("stream %s could not be claimed", token)

    def _full_by_backlog(self) -> float | None:
        """Admission control: the worst backlog of the streams served here when it is over
        `bus.asr_admit_backlog_s` (claim nothing new), else None."""
        limit = self.bus.asr_admit_backlog_s
        worst = max((st.behind_s for st in self.streams.values()), default=0.0)
        return worst if limit and worst > limit else None

    async def _refuse(self, waiting: list[str], worst: float) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log < LAG_LOUD_EVERY_S * 5:
            return
        self._last_refusal_log = now
        try:
            held = set(await self.kv.keys())
        except Exception:  # no keys at all (NoKeysError), or the bus is away for a moment
            held = set()
        unserved = [t for t in waiting if t not in held]
        if unserved:
            logger.warning(
                "stream(s) %s wait for ASR: this worker's streams are up to %.1f s of audio behind "
                "(bus.asr_admit_backlog_s %.0f); it takes no new stream until it catches up",
                ", ".join(unserved),
                worst,
                self.bus.asr_admit_backlog_s,
            )

    async def _release_idle(self, pending: set[str]) -> None:
        """Give back the streams with nothing to do for IDLE_RELEASE_S: no audio waiting on the bus, none
        held, every broadcast of theirs transcribed (a live one that stalled keeps its stream)."""
        now = time.monotonic()
        for st in list(self.streams.values()):
            busy = (
                st.token in pending
                or bool(st.waiting)
                or any(
                    not a.complete or a.held
                    for a in self.asr.broadcasts.values()
                    if subject_token(a.stream_id) == st.token
                )
            )
            if busy:
                st.idle_since = None
            elif st.idle_since is None:
                st.idle_since = now
            elif now - st.idle_since >= IDLE_RELEASE_S:
                logger.info("stream %s idle for %.0f s; its lease released", st.token, now - st.idle_since)
                await self._release(st, lost=False)

    # -- audio in ------------------------------------------------------------------------------------

    def _room(self, token: str) -> bool:
        """Whether the stream's broadcasts hold less untranscribed audio than the bound."""
        cap = self.bus.asr_max_buffered_s
        return all(
            a.transcript.buffered_s < cap
            for a in self.asr.broadcasts.values()
            if subject_token(a.stream_id) == token
        )

    async def _feed(self, st: _Stream) -> None:
        import nats.errors

        while not self.stop.is_set():
            if not self._room(st.token) or st.waiting:
                await asyncio.sleep(0.5 if st.waiting else 0.1)
                if st.waiting:
                    await self._retry_waiting(st)
                continue
            try:
                msgs = await pull_available(st.sub, PULL_MAX)
            except (nats.errors.TimeoutError, TimeoutError):  # a batch fetch times out as asyncio's
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("pull of stream %s failed; retrying", st.token, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for m in msgs:
                if st.waiting:
                    st.waiting.append(m)  # keep the order behind a chunk that could not be taken yet
                    continue
                try:
                    await self._add(st, m)
                except Exception:  # the store is away: it and what follows it wait, in order
                    logger.exception("audio chunk on stream %s could not be taken; retried", st.token)
                    st.waiting.append(m)

    async def _retry_waiting(self, st: _Stream) -> None:
        while st.waiting:
            try:
                if not await self._add(st, st.waiting[0], queued=True):
                    return
            except Exception:
                logger.debug("audio chunk on stream %s still not taken", st.token, exc_info=True)
                return
            st.waiting.pop(0)

    async def _add(self, st: _Stream, m: Any, *, queued: bool = False) -> bool:
        """One chunk into its broadcast's transcript; False when the broadcast is not stored yet."""
        try:
            chunk = decode_audio(m.data)
        except WireError as e:
            logger.error("audio message on %s refused and removed: %s", m.subject, e)
            await m.term()
            return True
        ctx = self.asr.broadcasts.get(chunk.broadcast_id)
        if ctx is None:
            ctx = await asyncio.to_thread(self.asr.open, chunk.broadcast_id, chunk.stream_id)
            if ctx is None:
                if not queued:
                    logger.warning(
                        "broadcast %s is not in the store yet; its audio waits", chunk.broadcast_id
                    )
                    st.waiting.append(m)
                return False
            if ctx.republish is not None:
                await self._publish(ctx.republish)
                ctx.republish = None
        if ctx.complete or (chunk.end_s <= ctx.transcript.done_s + 1e-3 and not chunk.final):
            await m.ack()  # transcribed and stored before (a redelivery after a restart)
            if ctx.complete and not ctx.held:
                self.asr.drop(ctx.broadcast_id)
            return True
        if ctx.next_chunk is not None and chunk.seq < ctx.next_chunk:
            await m.ack()  # delivered twice
            return True
        if ctx.next_chunk is not None and chunk.seq > ctx.next_chunk:
            logger.warning(
                "broadcast %s: audio chunk %d follows %d (chunks missing: a hole in its audio)",
                chunk.broadcast_id,
                chunk.seq,
                ctx.next_chunk - 1,
            )
        ctx.next_chunk = chunk.seq + 1
        if chunk.sample_rate != 16_000:
            logger.error("audio chunk %s at %d Hz refused (16 kHz only)", chunk.msg_id, chunk.sample_rate)
            await m.term()
            return True
        samples = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0
        if samples.size and not ctx.transcript.final:
            ctx.transcript.add_audio(chunk.start_s, samples)
        ctx.received(chunk.end_s, chunk.started_ts)
        ctx.arrivals.add(chunk.end_s, self.asr.clock(), stored_ts(m))
        ctx.held.append(Held(m, chunk.seq, chunk.end_s, chunk.final))
        if chunk.final and not ctx.transcript.final:
            ctx.transcript.finish()
        self.bell.set()
        return True

    async def _keep_alive(self) -> None:
        every = max(0.5, self.bus.ack_wait_s / 3)
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=every)
            except TimeoutError:
                pass
            msgs = [h.msg for a in self.asr.broadcasts.values() for h in a.held]
            msgs += [m for st in self.streams.values() for m in st.waiting]
            for m in msgs:
                try:
                    await m.in_progress()
                except Exception:
                    logger.debug("in-progress notice not sent", exc_info=True)

    # -- decoding and out ------------------------------------------------------------------------------

    async def _gather(self) -> list[BroadcastAsr]:
        """The broadcasts to decode next: once one is ready, up to `asr_batch_wait_ms` for others when
        batching (the wait also lets each window gather audio), else the one furthest behind at once."""
        size = self.bus.asr_batch if self.asr.batching is not None else 1
        while not self.stop.is_set():
            ready = self.asr.ready()
            if ready:
                deadline = time.monotonic() + self.bus.asr_batch_wait_ms / 1000
                while len(ready) < size and time.monotonic() < deadline:
                    self.bell.clear()
                    try:
                        await asyncio.wait_for(self.bell.wait(), timeout=deadline - time.monotonic())
                    except TimeoutError:
                        break
                    ready = self.asr.ready()
                now = self.asr.clock()
                ready.sort(key=lambda a: self.asr.lag_s(a, now), reverse=True)
                return ready[:size]
            self.bell.clear()
            try:
                await asyncio.wait_for(self.bell.wait(), timeout=0.5)
            except TimeoutError:
                pass
        return []

    async def _decoder(self) -> None:
        while not self.stop.is_set():
            ctxs = await self._gather()
            if not ctxs:
                continue
            results = await asyncio.to_thread(self.asr.decode, ctxs)
            failed = False
            for ctx, res in zip(ctxs, results, strict=True):
                if isinstance(res, BaseException):
                    logger.error("ASR pass over %s failed (%r); it is retried", ctx.broadcast_id, res)
                    failed = True
                    continue
                await self._commit(ctx, res)
            self._log_lag()
            if failed:  # not at once: what failed may fail again
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass

    async def _commit(self, ctx: BroadcastAsr, res: Any) -> None:
        try:
            msg = await asyncio.to_thread(self.asr.commit, ctx, res)
        except StaleBatch as e:  # another worker wrote this broadcast: ours is stale; the bus redelivers
            logger.error("%s; dropping this worker's state of it", e)
            self.asr.drop(ctx.broadcast_id)
            return
        except Exception:
            logger.exception("storing the ASR batch of %s failed; the broadcast is resumed", ctx.broadcast_id)
            self.asr.drop(ctx.broadcast_id)
            return
        ctx.max_lag_s = max(ctx.max_lag_s, self.asr.lag_s(ctx))
        if msg is None:
            return
        await self._publish(msg)
        # every chunk whose audio is before the stored watermark is done with (all of them at the end)
        while ctx.held and (msg.batch.final or ctx.held[0].end_s <= msg.batch.done_s + 1e-3):
            h = ctx.held.popleft()
            try:
                await h.msg.ack()
            except Exception:  # it comes back and is recognised as transcribed
                logger.warning("ack of audio chunk %d of %s not sent", h.seq, ctx.broadcast_id, exc_info=True)
        if msg.batch.final:
            logger.info(
                "broadcast %s fully transcribed (%d batches, max lag %.1f s)",
                ctx.broadcast_id,
                ctx.seq,
                ctx.max_lag_s,
            )
            self.asr.drop(ctx.broadcast_id)  # a chunk of it delivered again is recognised from the store

    async def _publish(self, msg: TranscriptMessage) -> None:
        from nats.js.errors import APIError

        data = encode_transcript(msg)
        delay = 0.1
        while True:
            try:
                await self.js.publish(
                    transcript_subject(msg.batch.stream_id), data, headers={"Nats-Msg-Id": msg.msg_id}
                )
                return
            except APIError as e:  # the transcripts stream is full: the analysis tier is behind
                logger.warning(
                    "bus refused transcript batch %s (%s); retrying in %.1f s", msg.msg_id, e, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _log_lag(self) -> None:
        now = self.asr.clock()
        loud = False
        rows = []
        for st in self.streams.values():
            ctxs = [a for a in self.asr.broadcasts.values() if subject_token(a.stream_id) == st.token]
            st.lag_s = max((self.asr.lag_s(a, now) for a in ctxs if not a.complete), default=0.0)
            behind = max((a.behind_s() for a in ctxs if not a.complete), default=0.0)
            st.behind_s = behind
            loud = loud or behind > LAG_WARN_S
            rows.append(f"{st.token} {st.lag_s:.1f} s behind live, {behind:.1f} s of audio not decoded")
        if rows and time.monotonic() - self._last_lag_log >= (LAG_LOUD_EVERY_S if loud else LAG_LOG_S):
            self._last_lag_log = time.monotonic()
            mean = self.asr.passes / max(1, self.asr.batches)
            (logger.warning if loud else logger.info)(
                "ASR lag: %s (%d passes in %d batches, %.1f windows a batch, %.1f s busy)",
                "; ".join(rows),
                self.asr.passes,
                self.asr.batches,
                mean,
                self.asr.busy_s,
            )


async def run_asr_worker(
    asr: BusAsr,
    bus: BusSection,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Claim streams and transcribe their audio until `stop` (or SIGTERM/SIGINT); see the module doc."""
    from nats.js.api import KeyValueConfig

    name = f"asr-{socket.gethostname()}-{os.getpid()}"
    runner = AsrRunner(asr, bus, name=name)
    if stop is not None:
        runner.stop = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, runner.stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    nc = await connect(bus, f"livewatch-{name}")
    tasks: list[asyncio.Task[None]] = []
    try:
        runner.js = js = nc.jetstream()
        await ensure_audio_stream(js, bus)
        await ensure_transcripts_stream(js, bus)
        try:
            runner.kv = await js.create_key_value(KeyValueConfig(bucket=LEASES, ttl=bus.asr_lease_s))
        except Exception as e:  # made by a worker with another lease time: theirs holds
            if "already in use" not in str(e):
                raise
            runner.kv = await js.key_value(LEASES)
        logger.info(
            "ASR worker %s pulling %s (batch %d, wait %.0f ms, at most %d streams) from %s",
            name,
            "lw.audio.<stream>",
            bus.asr_batch if asr.batching is not None else 1,
            bus.asr_batch_wait_ms,
            bus.asr_max_streams,
            bus.url,
        )
        if ready is not None:
            ready()
        tasks = [asyncio.create_task(t) for t in (runner._leases(), runner._keep_alive())]
        await runner._decoder()
    finally:
        for t in tasks:
            t.cancel()
        for st in list(runner.streams.values()):
            await runner._release(st, lost=False)
        try:
            await nc.flush(timeout=2)
        except Exception:
            logger.info("bus connection lost before closing", exc_info=True)
        await nc.close()
        asr.close()


def build_asr(cfg: Any, db: Any) -> BusAsr:
    """The ASR of `livewatch worker asr`: the monitor's live model and sliding-window options (`asr` and
    `live_asr` of the config; a root config gets the live defaults), batching across streams on a GPU
    (or with `bus.asr_batch_cpu`; see the module docstring)."""
    from app.monitor_config import LiveAsrSection, MonitorConfig
    from app.monitor_parts import live_transcriber_for
    from asr.build import enable_batching

    la = cfg.live_asr if isinstance(cfg, MonitorConfig) else LiveAsrSection()
    transcriber = live_transcriber_for(cfg.asr, la)
    batching = None
    if cfg.bus.asr_batch > 1:
        device = getattr(transcriber, "device", None)
        if device == "cuda" or cfg.bus.asr_batch_cpu:
            batching = enable_batching(transcriber)
            if batching is None:
                logger.warning("this ASR backend does not batch: windows are decoded one at a time")
        else:
            logger.info(
                "ASR on the %s: windows decoded one at a time (bus.asr_batch_cpu: off)", device or "CPU"
            )
    return BusAsr(db, la.options(), transcriber, batching)
