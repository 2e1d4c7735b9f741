"""The live monitor: many rooms recorded, transcribed, analysed and alerted on, for weeks.

Flow (DESIGN.md, "Flow on one GPU box"); the disk is the buffer and the database the ledger:

    ingest worker (ingest/worker.py: a recorder per stream,  ─ files ─┬─ AudioFollower (thread per broadcast)
        thread + ffmpeg/streamlink; its port: app/live_ingest.py)     │   16 kHz audio → LiveTranscript
        │ events: broadcast started / file recorded / ended           ▼
    DbWriter (store/writer.py) ◀── utterances + ASR watermark ── ASR worker (asr/worker.py: one thread
        │ after commit                                              owns the model, furthest behind first)
        ▼
    video worker (video.enabled; app/live_video.py, bounded queue: a file that finds it full is read
        back from the database later): each closed file → frames → captions (OCR) + visual detections ─┐
                                                                                                   ▼
    analysis worker (alerts/worker.py): rules + price checks → BroadcastAnalyzer → alert stored at once
        │ (+ webhook outbox rows, price claims, captions with the video watermark)
        │ closed alerts
        ▼
    evidence worker (alerts/evidence_worker.py; its port on the store: app/live_evidence.py): waits for
        the post-roll on disk, joins the files, writes the hashed evidence folder
    webhook delivery: POSTs outbox rows with retries          housekeeping: status file, lag, retention

Threads, not processes, for ASR and analysis: CTranslate2 releases the GIL while it decodes, so the
one ASR thread runs the model at full speed while the others (PyAV decoding, rule matching, SQLite)
take turns on the GIL; one process keeps one copy of the model and lets the workers share state
without serialising audio. Recording is separate processes (ffmpeg, streamlink) anyway.

Durability: every step is a transaction through `DbWriter` (file rows recorded → transcribed →
analyzed; utterances with the ASR watermark; alerts with the utterances' `analyzed` flags and the
webhook outbox rows: app/live_alerts.py). A monitor killed at any point resumes from the database at
the next start (app/monitor_resume.py); status file, lag and retention: app/monitor_housekeeping.py.
This module is the wiring: it builds the stage workers, is the port each of them talks to, and owns
the per-stream table (`streams`, under `lock`).

Ownership (app/monitor_lease.py, store/leases.py): several monitors may share one database. This one is
instance `instance_id`, holds a lease renewed by a heartbeat, stamps the broadcasts it starts, and its
resume, evidence sweep, verification pass, webhook delivery and retention touch only its own (plus, with
`lease.adopt_expired`, what dead instances left).

Shutdown (`stop()`, from any thread): recorders end their connections (ffmpeg lists its last file),
audio followers and the workers stop after their current step, queued writes are committed. What was
recorded but not yet transcribed is resumed at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import and_

from alerts.evidence_worker import EvidenceWorker
from alerts.worker import AnalysisResult, AnalysisWorker
from app import __version__
from app.live_alerts import store_result
from app.live_evidence import LiveEvidence
from app.live_ingest import IngestSink
from app.live_video import VideoWorker
from app.monitor_config import MonitorConfig
from app.monitor_housekeeping import Housekeeping
from app.monitor_lease import LeaseKeeper, default_instance_id
from app.monitor_parts import MonitorStats, StreamState, default_holder, live_transcriber
from app.monitor_resume import resume, video_files
from app.webhooks import WebhookDelivery
from asr.timing import with_stamps
from asr.types import Transcriber, TranscriptBatch
from asr.worker import AsrWorker
from detectors.price import PriceChecker
from detectors.price_config import load_price_config
from detectors.types import PriceClaim, RuleHolder, RuleSet
from ingest.worker import IngestWorker, RecorderSpec
from review.evidence_checks import VerifyScheduler
from review.monitor_status import STATUS_FILE
from store.db import Database
from store.leases import evidence_settled, owned_alerts
from store.live import LiveStore, stored_claims
from store.models import Broadcast
from store.paths import to_stored
from store.prices import SqlPriceHistory
from store.writer import DbWriter

__all__ = ["STATUS_FILE", "Monitor", "live_transcriber"]

logger = logging.getLogger(__name__)


class Monitor:
    """Runs every configured stream until `stop()`. See the module docstring."""

    def __init__(
        self,
        cfg: MonitorConfig,
        db: Database,
        data_dir: Path,
        *,
        transcriber: Transcriber | None = None,
        rule_holder: Callable[[list[Path]], RuleHolder] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.data_dir = Path(data_dir)
        self.rec_root = self.data_dir / "recordings"
        self.clock = clock
        self.lock = threading.RLock()
        self._stop = threading.Event()
        # this instance in a database shared by several monitors: the owner of its broadcasts and lease
        self.instance_id = cfg.instance_id or default_instance_id(self.data_dir)
        lc = cfg.lease
        self.lease = LeaseKeeper(
            db, self.instance_id, self.data_dir, ttl_s=lc.ttl_s, heartbeat_s=lc.heartbeat_s, clock=clock
        )
        mine = owned_alerts(self.instance_id, unowned=True)  # its own alerts, and scans' / bus-published
        self.writer = DbWriter(db)
        self.stats = MonitorStats()
        self.housekeeping = Housekeeping(self)
        self.asr = AsrWorker(
            cfg.live_asr.options(),
            self,
            partial(live_transcriber, cfg),
            catchup_cap_s=cfg.live_asr.lag_warn_s,
            clock=clock,
            transcriber=transcriber,
        )
        self._threads: list[threading.Thread] = []
        self.holders: dict[tuple[Path, ...], RuleHolder] = {}
        make_holder = rule_holder or (lambda dirs: default_holder(dirs, cfg))
        self.streams: dict[str, StreamState] = {}
        for entry in cfg.streams_resolved():
            dirs = tuple(cfg.rule_dirs() + list(entry.rule_dirs))
            if dirs not in self.holders:
                self.holders[dirs] = make_holder(list(dirs))
            pre, post = cfg.pre_post_roll(entry)
            self.streams[entry.id] = StreamState(entry, self.holders[dirs], pre, post)
        base_dirs = tuple(cfg.rule_dirs())
        self.base_holder = self.holders.get(base_dirs) or make_holder(list(base_dirs))
        self.holders[base_dirs] = self.base_holder
        for h in self.holders.values():
            if hasattr(h, "on_failure"):  # a refused reload: status, metrics, log (holder) and ops webhook
                h.on_failure = self.housekeeping.rules_reload_failed
        self.webhooks = (
            # an alert's hook carries its clip: posted once the evidence is settled (LiveEvidence wakes it)
            WebhookDelivery(db, cfg.webhooks, write=self.writer.call, scope=and_(mine, evidence_settled()))
            if cfg.webhooks
            else None
        )
        self.writer.on_event = self.housekeeping.writer_event  # a full disk or writer queue: ops webhook
        self._price = PriceChecker(load_price_config(cfg.price_config), SqlPriceHistory(db))
        self.analysis = AnalysisWorker(cfg.alerts, self, self._price)
        # the evidence verification pass (the review app's, shared): a missing or altered clip is recorded
        # and shown in the status even when no review app runs
        every = cfg.evidence.verify_interval_s
        self.verifier = VerifyScheduler(
            db,
            self.data_dir,
            every,
            first_delay_s=min(5.0, every),
            on_pass=self.housekeeping.verified,
            scope=mine,
        )
        port = LiveEvidence(
            cfg.alerts,
            db,
            self.writer,
            rolls=self._rolls,
            recording=self.recording,
            webhooks=lambda: self.webhooks,
            owner=self.instance_id,
        )
        self.evidence = EvidenceWorker(
            cfg.alerts,
            port,
            evidence_root=self.data_dir / "evidence",
            tmp_dir=self.data_dir / "tmp",
            tool_version=__version__,
            clock=clock,
        )
        v = cfg.video
        self.video = (
            VideoWorker(v, self.analysis.put, partial(video_files, self))
            if v.enabled and (v.screen.enabled or v.visual.enabled)
            else None
        )
        specs = [
            RecorderSpec(st.entry.id, st.entry.url, st.entry, st.entry.keeps_video(v.enabled))
            for st in self.streams.values()
        ]
        self.ingest = IngestWorker(specs, IngestSink(self), self.rec_root, clock=clock)

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def stream_ids(self) -> list[str]:
        return list(self.streams)

    @property
    def transcriber(self) -> Transcriber:
        return self.asr.transcriber

    def start(self) -> None:
        """Take the lease, load the model, resume unfinished work from the database, then start every stream.
        Raises store.leases.LeaseHeldError while another live process runs this instance."""
        self.lease.take()
        _ = self.transcriber  # fail before recording anything if the model cannot load
        self.lease.start()
        self.writer.start()
        resume(self)
        self.analysis.start(self._guard)
        self.asr.start(self._guard)
        self.evidence.start(self._guard)
        loop = partial(self.housekeeping.run, self._stop)
        t = threading.Thread(target=self._guard(loop), name="housekeeping", daemon=True)
        t.start()
        self._threads.append(t)
        if self.webhooks is not None:
            self.webhooks.start()
        self.verifier.start()
        if self.video is not None:
            self.video.start()
        self.ingest.start()
        logger.info(
            "monitoring %d stream(s) as instance %s; data in %s",
            len(self.streams),
            self.instance_id,
            self.data_dir,
        )

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def stop(self) -> None:
        if self._stop.is_set() or self.lease.refused:  # refused: the running one's status file stays
            return
        logger.info("stopping: closing connections")
        self.ingest.stop()
        self._stop.set()
        self.asr.stop()
        if self.video is not None:
            self.video.stop()
        self.evidence.stop()
        for t in self._threads:
            t.join(30)
        self.analysis.stop()
        self.verifier.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.writer.stop()
        self.lease.release()  # after the last write: its broadcasts are closed, the rest resumable
        self.housekeeping.write_status(stopped=True)
        logger.info("stopped")

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:
                logger.exception("monitor thread %s died", threading.current_thread().name)
                raise

        return run

    def status(self) -> dict[str, Any]:
        """A snapshot for `livewatch status` and /metrics (see app/monitor_housekeeping.py)."""
        return self.housekeeping.status()

    def retention(self) -> int:
        """Apply the retention policies now; the number of files deleted."""
        return self.housekeeping.retention()

    # -- ASR worker (AsrPort) -------------------------------------------------------------------------

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        """(recorded end, recording over) of a broadcast (AsrPort)."""
        return self.ingest.recording(broadcast_id)

    def transcribed(self, batch: TranscriptBatch) -> None:
        """A pass's lines and watermark (the ASR thread, AsrPort): stored by the writer, then analysed."""
        self.writer.submit(
            partial(
                LiveStore.store_transcript,
                broadcast_id=batch.broadcast_id,
                utterances=batch.utterances,
                done_s=batch.done_s,
                final=batch.final,
            ),
            then=lambda _stored: self.analysis.put(_received(batch)),
        )

    # -- analysis worker (AnalysisPort) -----------------------------------------------------------------

    def rules(self, stream_id: str) -> RuleSet:
        """The stream's rule set, reloaded when its packs changed (AnalysisPort)."""
        st = self.streams.get(stream_id)
        return (st.holder if st is not None else self.base_holder).maybe_reload()

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]:
        with self.db.session() as s:
            return stored_claims(s, broadcast_id)

    def deliver(self, result: AnalysisResult) -> None:
        """An analysed batch (the analysis thread, AnalysisPort): the alerts, claims, captions and the
        watermark are stored in one transaction by the writer (app/live_alerts.py); closed alerts go to
        the evidence worker."""
        batch = result.batch
        st = self.streams.get(batch.stream_id)
        a = self.cfg.alerts
        pre, post = (st.pre_roll_s, st.post_roll_s) if st is not None else (a.pre_roll_s, a.post_roll_s)
        tx = partial(
            store_result,
            result=result,
            folder=self._folder(batch.broadcast_id),
            pre_roll_s=pre,
            post_roll_s=post,
            hooks=self.cfg.webhooks,
            now=self.clock(),
        )

        def after(new: list[str]) -> None:
            for alert in result.alerts:
                if alert.alert_id in new:
                    self.stats.alerts += 1
                    if st is not None:
                        st.alerts += 1
                    logger.warning(
                        "ALERT %s %s %s [%.1f-%.1f s] %s",
                        batch.stream_id,
                        alert.category,
                        alert.rule_id,
                        alert.start_s,
                        alert.end_s,
                        alert.text[:80],
                    )
            for alert_id in result.closed:
                self.evidence.put(alert_id)
            if new and self.webhooks is not None:
                self.webhooks.wake()

        self.writer.submit(tx, then=after)

    def clocks(self, broadcast_id: str) -> tuple[float | None, float | None]:
        """(wall clock of start_s = 0, the source's clock at start_s = 0) of a broadcast."""
        ctx = self.asr.get(broadcast_id)
        if ctx is not None:
            return ctx.started_ts, ctx.source_start_s
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            return (None, None) if b is None else (b.started_ts, b.source_start_s)

    def _folder(self, broadcast_id: str) -> str:
        ctx = self.asr.get(broadcast_id)
        if ctx is not None:
            return to_stored(ctx.folder, self.db.data_dir)
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            return (b.folder or "") if b is not None else ""

    # -- evidence worker -------------------------------------------------------------------------------

    def _rolls(self, stream_id: str) -> tuple[float, float, str | None] | None:
        st = self.streams.get(stream_id)
        return None if st is None else (st.pre_roll_s, st.post_roll_s, st.entry.name)


def _received(batch: TranscriptBatch) -> TranscriptBatch:
    """The batch, its lines stamped as stored and handed to the analysis (asr/timing.py)."""
    if not batch.utterances:
        return batch
    return replace(batch, utterances=with_stamps(batch.utterances, {"received_ts": time.time()}))
