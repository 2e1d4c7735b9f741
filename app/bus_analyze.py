"""The analyze stage on the bus: transcript batches from JetStream → the one analysis → the store.

    publisher / ASR ──▶ LW_TRANSCRIPTS (work queue, lw.transcripts.<stream_id>)
                              │ durable pull consumer "analyze", shared by every analyze worker
                              ▼
    analyze worker(s): AnalysisWorker.analyze (alerts/worker.py, the monitor's and the scan's analyzer)
                              │ app/live_alerts.store_result in one transaction, + the bus watermark
                              ▼ then ack
                         the store (SQLite or PostgreSQL)

Delivery is at-least-once, the store idempotent. Each batch carries its place in its broadcast
(`seq`, app/bus_wire.py); the broadcast's row keeps the last `seq` committed (`broadcasts.bus_seq`),
written in the same transaction as the batch's alerts and `analyzed` marks. A worker:

- acknowledges a batch whose `seq` is already committed without analysing it again (a worker died
  between commit and ack, or the ack was lost): a redelivered transcript never raises a second alert;
- gives back (nak, redelivered after `bus.retry_delay_s`) a batch that arrives before the one it
  follows: a broadcast's batches are analysed in order whichever worker takes them;
- analyses the next batch with the broadcast's analyzer it holds if that analyzer has seen exactly the
  committed batches, else first rebuilds it from the store (`AnalysisWorker.resume`: the open alerts
  reopened, the analysed lines as context): a worker started after a kill -9, or one taking over a
  broadcast another worker was analysing, carries on with the same alert ids;
- acknowledges only after the transaction committed; a failed analysis or transaction is given back
  and its in-memory analyzer dropped (the next try rebuilds it from what was committed).

Video (app/bus_video.py): the ingest boxes read their broadcasts' frames with the monitor's video reader
and publish each batch (captions, captions still on screen, visual detections, watermarks) on
`LW_VIDEO` (durable consumer "analyze_video", shared). A worker feeds it to the broadcast's video
analyzer (the same `AnalysisWorker`, lane VIDEO: groups of source screen/visual never join speech
groups) and commits it with the monitor's `store_result` (captions stored, video watermark) plus the
broadcast's video cursor (`bus_video_epoch`, `bus_video_seq`) under the same rules: a committed batch
is acknowledged again without analysis, an early one given back, a stale analyzer rebuilt from the
store (open screen/visual alerts, the captions read as context, the video watermark). A batch of a
newer reader (`epoch`: a takeover on the ingest side, reading again from the stored video watermark)
starts at its `seq` 0 and retires the older reader's batches not committed yet. Price claims: each
lane's transaction replaces only its own sources' claims (speech, or screen), as the two lanes may be
analysed by different workers.

Concurrency contract: `BusAnalyzer` (the synchronous part) is used by one thread at a time; the
asyncio loop (`run_analyze_worker`) takes one batch at a time and runs it on a thread so the NATS
connection keeps answering (and tells the server the batch is in progress while it is analysed). On
SIGTERM/SIGINT the worker finishes the batch in hand, acknowledges it and exits; what it had not taken
stays on the bus. Several workers may run at once, on any boxes: `max_ack_pending` bounds the batches
handed out and not acknowledged, all workers together (backpressure).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from alerts.analyzer import SPEECH, VIDEO
from alerts.webhook import WebhookConfig
from alerts.worker import AnalysisResult, AnalysisWorker
from app.bus_config import BusSection, ensure_work_queue
from app.bus_wire import (
    TRANSCRIPTS_STREAM,
    TRANSCRIPTS_SUBJECTS,
    VIDEO_STREAM,
    VIDEO_SUBJECTS,
    TranscriptMessage,
    VideoMessage,
    WireError,
    decode_transcript,
    decode_video,
    stored_ts,
)
from app.config import RootConfig
from app.live_alerts import store_result
from app.monitor_parts import default_holder
from asr.timing import with_stamps
from detectors.price import PriceChecker
from detectors.types import PriceClaim, RuleHolder, RuleSet
from store import repo
from store.db import Database
from store.live import alert_from_row, stored_claims
from store.models import AlertRow, Broadcast, UtteranceRow

__all__ = [
    "DURABLE",
    "VIDEO_DURABLE",
    "BusAnalyzer",
    "Outcome",
    "Rolls",
    "ensure_transcripts_stream",
    "ensure_video_stream",
    "run_analyze_worker",
]

logger = logging.getLogger(__name__)

DURABLE = "analyze"
VIDEO_DURABLE = "analyze_video"
BUS_SEQ = "bus_seq"  # the broadcast column: the last batch committed by an analyze worker
WARM_UP_LINE = "欢迎来到直播间的家人们"  # embedded once at start, so the first batch finds the model loaded


class Outcome(enum.Enum):
    STORED = "stored"  # analysed and committed: ack
    DUPLICATE = "duplicate"  # committed before (redelivery): ack, nothing analysed
    EARLY = "early"  # an earlier batch of its broadcast is not committed yet: nak, try later
    NO_BROADCAST = "no_broadcast"  # the broadcast's row is not in the store (yet): nak, try later


class _Conflict(Exception):
    """The broadcast's committed batches changed between the check and the transaction."""

    def __init__(self, committed: Any) -> None:
        super().__init__(committed)
        self.committed = committed


@dataclass(frozen=True, slots=True)
class Rolls:
    """Evidence rolls and webhooks of a stream (from a monitor config's streams, else `alerts`)."""

    pre_roll_s: float
    post_roll_s: float
    hooks: tuple[WebhookConfig, ...] = ()


@dataclass(slots=True)
class _State:
    worker: AnalysisWorker  # holds this broadcast's analyzer (and its price claims)
    seq: int  # the last batch this analyzer has seen, committed
    epoch: int = 0  # video: the reader whose batches it has seen


class _Port:
    """AnalysisPort of one batch: rules and clocks from the worker, delivery = the store transaction."""

    def __init__(self, owner: BusAnalyzer) -> None:
        self.owner = owner
        self.msg: TranscriptMessage | VideoMessage | None = None
        self.new: list[str] = []

    def rules(self, stream_id: str) -> RuleSet:
        return self.owner.holder_for(stream_id).maybe_reload()

    def clocks(self, broadcast_id: str) -> tuple[float | None, float | None]:
        msg = self.msg
        if (
            isinstance(msg, TranscriptMessage)
            and msg.batch.broadcast_id == broadcast_id
            and msg.started_ts is not None
        ):
            return msg.started_ts, msg.source_start_s
        with self.owner.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            return (None, None) if b is None else (b.started_ts, b.source_start_s)

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]:
        with self.owner.db.session() as s:
            return stored_claims(s, broadcast_id)

    def deliver(self, result: AnalysisResult) -> None:
        assert self.msg is not None
        self.new = self.owner.commit(self.msg, result)


class BusAnalyzer:
    """Batches in, alerts stored: the synchronous part of an analyze worker (see the module docstring)."""

    def __init__(
        self,
        cfg: RootConfig,
        db: Database,
        price: PriceChecker,
        holder_for: Callable[[str], RuleHolder],
        rolls: Callable[[str], Rolls],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.price = price
        self.holder_for = holder_for
        self.rolls = rolls
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._video: dict[str, _State] = {}  # the video lane's analyzers, by broadcast
        self.rebuilt = 0  # analyzers rebuilt from the store (a takeover or a restart)
        # called after a batch's transaction committed, before it is acknowledged (tests kill here)
        self.after_commit: Callable[[TranscriptMessage], None] | None = None

    def warm_up(self, stream_ids: Sequence[str]) -> float:
        """Load before the first batch what it would otherwise load while its lines wait: each stream's
        rule set and the semantic stage's embedding model (the monitor loads its rules when a broadcast
        starts, before its first line). Seconds it took."""
        t0 = time.perf_counter()
        rules: Any = None
        for sid in stream_ids or [""]:
            rules = self.holder_for(sid).maybe_reload()
        prime = getattr(rules, "prime", None)
        if prime is not None:
            prime([WARM_UP_LINE])
        return time.perf_counter() - t0

    def handle(self, msg: TranscriptMessage) -> tuple[Outcome, list[str]]:
        """One batch: (what to tell the bus, ids of the alerts raised anew)."""
        b = msg.batch
        committed = self._committed(b.broadcast_id)
        if committed is None:
            return Outcome.NO_BROADCAST, []
        if msg.seq <= committed:
            return Outcome.DUPLICATE, []
        if msg.seq > committed + 1:
            return Outcome.EARLY, []
        state = self._states.get(b.broadcast_id)
        if state is None or state.seq != committed:
            state = self._rebuild(b.broadcast_id, committed)
        port = state.worker.port
        assert isinstance(port, _Port)
        port.msg, port.new = msg, []
        try:
            state.worker.analyze(b)
        except _Conflict as e:  # another worker committed it meanwhile: this analyzer is stale
            self._states.pop(b.broadcast_id, None)
            return (Outcome.DUPLICATE if msg.seq <= e.committed else Outcome.EARLY), []
        except BaseException:
            self._states.pop(b.broadcast_id, None)  # it saw a batch that was not committed
            raise
        finally:
            port.msg = None
        state.seq = msg.seq
        if b.final:  # the broadcast's speech is analysed: nothing more to hold for it
            self._states.pop(b.broadcast_id, None)
        if self.after_commit is not None:
            self.after_commit(msg)
        return Outcome.STORED, port.new

    def handle_video(self, msg: VideoMessage) -> tuple[Outcome, list[str]]:
        """One video batch: (what to tell the bus, ids of the alerts raised anew). See the module docstring."""
        b = msg.batch
        committed = self._committed_video(b.broadcast_id)
        if committed is None:
            return Outcome.NO_BROADCAST, []
        outcome = _video_order(msg, committed)
        if outcome is not None:
            return outcome, []
        state = self._video.get(b.broadcast_id)
        if state is None or (state.epoch, state.seq) != committed:
            state = self._rebuild_video(b.broadcast_id, committed)
        port = state.worker.port
        assert isinstance(port, _Port)
        port.msg, port.new = msg, []
        try:
            state.worker.analyze(b)
        except _Conflict as e:
            self._video.pop(b.broadcast_id, None)
            return (_video_order(msg, e.committed) or Outcome.EARLY), []
        except BaseException:
            self._video.pop(b.broadcast_id, None)
            raise
        finally:
            port.msg = None
        state.epoch, state.seq = msg.epoch, msg.seq
        if b.final:
            self._video.pop(b.broadcast_id, None)
        return Outcome.STORED, port.new

    # -- the store ---------------------------------------------------------------------------------------

    def _committed_video(self, broadcast_id: str) -> tuple[int, int] | None:
        with self.db.session() as s:
            row = s.execute(
                select(Broadcast.id, Broadcast.bus_video_epoch, Broadcast.bus_video_seq).where(
                    Broadcast.id == broadcast_id
                )
            ).first()
        if row is None:
            return None
        return _cursor(row.bus_video_epoch, row.bus_video_seq)

    def _committed(self, broadcast_id: str) -> int | None:
        with self.db.session() as s:
            row = s.execute(
                select(Broadcast.id, Broadcast.bus_seq).where(Broadcast.id == broadcast_id)
            ).first()
        if row is None:
            return None
        return -1 if row.bus_seq is None else int(row.bus_seq)

    def commit(self, msg: TranscriptMessage | VideoMessage, result: AnalysisResult) -> list[str]:
        """The batch's transaction: app/live_alerts.store_result (the monitor's) plus the bus watermark,
        guarded by the broadcast's row (locked on PostgreSQL) so two workers cannot both commit it."""
        b = msg.batch
        rolls = self.rolls(b.stream_id)
        video = isinstance(msg, VideoMessage)

        def tx(s: Session) -> list[str]:
            nonlocal result
            row = s.get(Broadcast, b.broadcast_id, with_for_update=True)
            if row is None:
                raise KeyError(b.broadcast_id)
            if isinstance(msg, VideoMessage):
                cursor = _cursor(row.bus_video_epoch, row.bus_video_seq)
                if _video_order(msg, cursor) is not None:
                    raise _Conflict(cursor)
            else:
                committed = -1 if row.bus_seq is None else int(row.bus_seq)
                if committed != msg.seq - 1:
                    raise _Conflict(committed)
            if result.new_claims:  # this lane's claims replace only this lane's stored ones
                result = _lane_claims(s, result, video)
            new = store_result(
                s,
                result,
                folder=row.folder or "",
                pre_roll_s=rolls.pre_roll_s,
                post_roll_s=rolls.post_roll_s,
                hooks=list(rolls.hooks),
                now=self.clock(),
            )
            if isinstance(msg, VideoMessage):
                row.bus_video_epoch, row.bus_video_seq = msg.epoch, msg.seq
            else:
                row.bus_seq = msg.seq
            return new

        with self.db.session() as s, s.begin():
            return tx(s)

    def _rebuild(self, broadcast_id: str, committed: int) -> _State:
        """A fresh speech analyzer for a broadcast, brought to where the store says its analysis stands."""
        state = self._states[broadcast_id] = _State(self._fresh(), committed)
        if committed >= 0:
            self._resume(state.worker, broadcast_id, SPEECH, f"batch {committed}")
        return state

    def _rebuild_video(self, broadcast_id: str, committed: tuple[int, int]) -> _State:
        """A fresh video analyzer, brought to where the store says the broadcast's video stands."""
        state = self._video[broadcast_id] = _State(self._fresh(), committed[1], committed[0])
        if committed != (0, -1):
            self._resume(state.worker, broadcast_id, VIDEO, f"reader {committed[0]} batch {committed[1]}")
        return state

    def _fresh(self) -> AnalysisWorker:
        return AnalysisWorker(self.cfg.alerts, _Port(self), self.price)

    def _resume(self, worker: AnalysisWorker, broadcast_id: str, lane: str, where: str) -> None:
        """Bring `worker` to where the store says the broadcast's `lane` stands (a takeover or a restart):
        the lane's alerts that may still grow or whose context after is not complete reopened (the
        analyzer closes a group once its watermark passes its end plus max(merge gap, context after),
        alerts/analyzer.py), the lane's lines read before as context, and the lane's watermark. Speech:
        speech alerts, the lines analysed, `analyzed_s`; video: screen and visual alerts, the captions
        read, `video_done_s`. The two lanes are analysed apart on the bus (module docstring)."""
        self.rebuilt += 1
        a = self.cfg.alerts
        horizon = max(a.merge_gap_s, a.context_after_s)
        speech = lane == SPEECH
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            done_s = ((b.analyzed_s if speech else b.video_done_s) or 0.0) if b is not None else 0.0
            rows = s.scalars(
                select(AlertRow)
                .where(
                    AlertRow.broadcast_id == broadcast_id,
                    (AlertRow.source == "speech") if speech else (AlertRow.source != "speech"),
                    AlertRow.evidence_status == "pending",
                    AlertRow.end_s + horizon >= done_s,
                )
                .order_by(AlertRow.start_s)
            ).all()
            alerts = [alert_from_row(s, r) for r in rows]
            low = min([al.start_s for al in alerts] + [done_s]) - a.context_before_s - 1.0
            read = (
                and_(UtteranceRow.source == "speech", UtteranceRow.analyzed.is_(True))
                if speech
                else UtteranceRow.source == "screen"
            )
            ctx = [
                repo.utterance_from_row(r)
                for r in s.scalars(
                    select(UtteranceRow)
                    .where(UtteranceRow.broadcast_id == broadcast_id, read, UtteranceRow.end_s >= low)
                    .order_by(UtteranceRow.start_s, UtteranceRow.idx)
                )
            ]
        worker.resume(broadcast_id, alerts, ctx, done_s, lane=lane)
        logger.info(
            "broadcast %s: %s analyzer rebuilt from the store at %s (%.1f s; %d open alert(s), %d line(s) of "
            "context)",
            broadcast_id,
            lane,
            where,
            done_s,
            len(alerts),
            len(ctx),
        )


def _cursor(epoch: int | None, seq: int | None) -> tuple[int, int]:
    """A broadcast's committed video batch: (reader, place); (0, -1) when none was committed."""
    return (0 if epoch is None else int(epoch), -1 if seq is None else int(seq))


def _video_order(msg: VideoMessage, committed: tuple[int, int]) -> Outcome | None:
    """None when `msg` is the batch that follows `committed`; else DUPLICATE (committed before, or of a
    reader a newer one replaced) or EARLY (a batch it follows is not committed yet)."""
    epoch, seq = committed
    if msg.epoch < epoch or (msg.epoch == epoch and msg.seq <= seq):
        return Outcome.DUPLICATE
    if (msg.epoch == epoch and msg.seq == seq + 1) or (msg.epoch > epoch and msg.seq == 0):
        return None
    return Outcome.EARLY


def _lane_claims(s: Session, result: AnalysisResult, video: bool) -> AnalysisResult:
    """The broadcast's claims to store: the other lane's as stored, this lane's as analysed."""
    mine = (lambda src: src != "speech") if video else (lambda src: src == "speech")
    keep = [c for c in stored_claims(s, result.batch.broadcast_id) if not mine(c.source)]
    return replace(result, claims=tuple(keep + [c for c in result.claims if mine(c.source)]))


# -- JetStream ----------------------------------------------------------------------------------------


async def ensure_transcripts_stream(js: Any, bus: BusSection) -> None:
    """The work-queue stream of transcript batches (app/bus_config.ensure_work_queue)."""
    await ensure_work_queue(js, bus, TRANSCRIPTS_STREAM, TRANSCRIPTS_SUBJECTS)


async def ensure_video_stream(js: Any, bus: BusSection) -> None:
    """The work-queue stream of video batches from the ingest boxes (app/bus_config.ensure_work_queue)."""
    await ensure_work_queue(js, bus, VIDEO_STREAM, VIDEO_SUBJECTS)


async def ensure_analyze_consumer(
    js: Any,
    bus: BusSection,
    durable: str = DURABLE,
    *,
    stream: str = TRANSCRIPTS_STREAM,
    subjects: str = TRANSCRIPTS_SUBJECTS,
) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=bus.ack_wait_s,
        max_ack_pending=bus.max_ack_pending,
        max_deliver=-1,  # a batch is given back until it is committed; never dropped
        filter_subject=subjects,
    )
    await js.add_consumer(stream, config)


async def connect(bus: BusSection, name: str) -> Any:
    import nats

    return await nats.connect(
        servers=bus.servers(), name=name, max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=5
    )


async def _keep_alive(msg: Any, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await msg.in_progress()
        except Exception:
            logger.debug("in-progress notice not sent", exc_info=True)


async def _one(
    msg: Any, analyzer: BusAnalyzer, bus: BusSection, lock: asyncio.Lock | None = None
) -> Outcome | None:
    meta = msg.metadata
    tm: TranscriptMessage | VideoMessage
    try:
        tm = decode_video(msg.data) if msg.subject.startswith("lw.video.") else decode_transcript(msg.data)
    except WireError as e:
        logger.error("bus message %s on %s refused and removed: %s", meta.sequence.stream, msg.subject, e)
        await msg.term()
        return None
    if isinstance(tm, TranscriptMessage) and tm.batch.utterances:  # hop stamps (asr/timing.py)
        stamps = {"received_ts": time.time()}
        published = stored_ts(msg)
        if published is not None:
            stamps["published_ts"] = published
        tm = replace(tm, batch=replace(tm.batch, utterances=with_stamps(tm.batch.utterances, stamps)))
    alive = asyncio.create_task(_keep_alive(msg, max(0.5, bus.ack_wait_s / 3)))
    handle = analyzer.handle_video if isinstance(tm, VideoMessage) else analyzer.handle
    try:
        async with lock or asyncio.Lock():  # the analyzer is used by one thread at a time
            outcome, new = await asyncio.to_thread(handle, tm)  # type: ignore[arg-type]
    except Exception:
        logger.exception(
            "batch %s of broadcast %s (delivery %d) failed; given back to the bus",
            tm.seq,
            tm.batch.broadcast_id,
            meta.num_delivered,
        )
        await msg.nak(delay=bus.retry_delay_s)
        return None
    finally:
        alive.cancel()
    if outcome in (Outcome.STORED, Outcome.DUPLICATE):
        try:
            await msg.ack_sync(timeout=5.0)
        except Exception:  # it comes back and is recognised as committed
            logger.warning(
                "ack of batch %s of %s not confirmed", tm.seq, tm.batch.broadcast_id, exc_info=True
            )
        for alert_id in new:
            logger.warning("ALERT %s %s (batch %d)", tm.batch.stream_id, alert_id, tm.seq)
        if outcome is Outcome.DUPLICATE:
            logger.info("batch %d of %s was committed before; acknowledged", tm.seq, tm.batch.broadcast_id)
    else:
        if outcome is Outcome.NO_BROADCAST:
            logger.warning(
                "broadcast %s is not in the store yet; batch %d given back", tm.batch.broadcast_id, tm.seq
            )
        await msg.nak(delay=bus.retry_delay_s)
    return outcome


async def run_analyze_worker(
    analyzer: BusAnalyzer,
    bus: BusSection,
    *,
    durable: str = DURABLE,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Pull batches (transcripts and video) until `stop` is set (or SIGTERM/SIGINT); see the module
    docstring."""

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    nc = await connect(bus, f"livewatch-analyze-{socket.gethostname()}-{os.getpid()}")
    try:
        js = nc.jetstream()
        await ensure_transcripts_stream(js, bus)
        await ensure_analyze_consumer(js, bus, durable)
        await ensure_video_stream(js, bus)
        vdurable = VIDEO_DURABLE if durable == DURABLE else f"{durable}_video"
        await ensure_analyze_consumer(js, bus, vdurable, stream=VIDEO_STREAM, subjects=VIDEO_SUBJECTS)
        sub = await js.pull_subscribe_bind(durable, stream=TRANSCRIPTS_STREAM)
        vsub = await js.pull_subscribe_bind(vdurable, stream=VIDEO_STREAM)
        logger.info(
            "analyze worker pulling %s (consumer %s) and %s (consumer %s) from %s",
            TRANSCRIPTS_STREAM,
            durable,
            VIDEO_STREAM,
            vdurable,
            bus.url,
        )
        if ready is not None:
            ready()
        lock = asyncio.Lock()
        await asyncio.gather(_pull(sub, analyzer, bus, stop, lock), _pull(vsub, analyzer, bus, stop, lock))
    finally:
        # every batch taken was acknowledged or given back (ack_sync / nak above): close at once (a drain
        # would wait out the open pull request); a batch in hand at a crash is redelivered anyway
        try:
            await nc.flush(timeout=2)
        except Exception:  # the server went first (a dev cluster stopping)
            logger.info("bus connection lost before closing", exc_info=True)
        await nc.close()


async def _pull(
    sub: Any, analyzer: BusAnalyzer, bus: BusSection, stop: asyncio.Event, lock: asyncio.Lock
) -> None:
    """One consumer's batches, one at a time, until `stop` (the analyzer itself is shared under `lock`)."""
    import nats.errors

    while not stop.is_set():
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            await _one(m, analyzer, bus, lock)


def price_checker(cfg: RootConfig, db: Database) -> PriceChecker:
    from detectors.price_config import load_price_config
    from store.prices import SqlPriceHistory

    return PriceChecker(load_price_config(cfg.price_config), SqlPriceHistory(db))


def build_analyzer(cfg: RootConfig, db: Database) -> BusAnalyzer:
    """The analyzer of `livewatch worker analyze`: rule packs (per stream when the config is a monitor's),
    price checks and rolls as the monitor builds them."""
    from app.monitor_config import MonitorConfig

    holders: dict[tuple[Any, ...], RuleHolder] = {}
    streams = {e.id: e for e in cfg.streams_resolved()} if isinstance(cfg, MonitorConfig) else {}

    def holder_for(stream_id: str) -> RuleHolder:
        entry = streams.get(stream_id)
        dirs = tuple(cfg.rule_dirs() + (list(entry.rule_dirs) if entry is not None else []))
        if dirs not in holders:
            holders[dirs] = default_holder(list(dirs), cfg)
        return holders[dirs]

    def rolls(stream_id: str) -> Rolls:
        hooks = tuple(cfg.webhooks) if isinstance(cfg, MonitorConfig) else ()
        entry = streams.get(stream_id)
        if entry is not None and isinstance(cfg, MonitorConfig):
            pre, post = cfg.pre_post_roll(entry)
            return Rolls(pre, post, hooks)
        return Rolls(cfg.alerts.pre_roll_s, cfg.alerts.post_roll_s, hooks)

    analyzer = BusAnalyzer(cfg, db, price_checker(cfg, db), holder_for, rolls)
    took = analyzer.warm_up(list(streams))
    logger.info("rules and models loaded in %.1f s", took)
    return analyzer
