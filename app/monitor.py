"""The live monitor: many rooms recorded, transcribed, analysed and alerted on, for weeks.

Flow (DESIGN.md, "Flow on one GPU box"); the disk is the buffer and the database the ledger:

    Recorder (thread + ffmpeg/streamlink, one per stream) ─ files ─┬─ AudioFollower (thread per broadcast)
        │ events: broadcast started / file recorded / ended         │   16 kHz audio → LiveTranscript
        ▼                                                           ▼
    DbWriter (the one writer) ◀── utterances + ASR watermark ── ASR worker (asr/worker.py: one thread
        │ after commit                                              owns the model, furthest behind first)
        ▼
    video worker (video.enabled): each closed file → frames → captions (OCR) + visual detections ─┐
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
webhook outbox rows). A monitor killed at any point and started again closes the interrupted broadcast
(a gap is stored), re-registers files the database missed, re-transcribes from the watermark,
analyses utterances not yet analysed, re-reads video from its watermark (`video_done_s`; a caption on
screen at the crash is read again from that point), and cuts pending evidence; alert ids are
deterministic, so nothing is raised twice.

Shutdown (`stop()`, from any thread): recorders end their connections (ffmpeg lists its last file),
audio followers and the workers stop after their current step, queued writes are committed. What was
recorded but not yet transcribed is resumed at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.evidence import alert_payload
from alerts.evidence_worker import EvidenceWorker
from alerts.types import Alert
from alerts.worker import AnalysisResult, AnalysisWorker
from app import __version__
from app.live_evidence import LiveEvidence
from app.live_store import (
    DbWriter,
    LiveStore,
    alert_from_row,
    next_caption_index,
    next_utterance_index,
    no_space,
    rescan_segments,
    stored_claims,
)
from app.live_video import VideoWorker
from app.monitor_config import MonitorConfig, StreamEntry
from app.retention import apply_retention
from app.webhooks import WebhookDelivery, enqueue
from asr.build import LiveDecoding, build_transcriber
from asr.types import Transcriber, TranscriptBatch
from asr.worker import AsrWorker
from detectors.price import PriceChecker
from detectors.price_config import load_price_config
from detectors.types import PriceClaim, RuleHolder, RuleSet, VideoBatch
from ingest.recorder import Recorder
from ingest.types import (
    BroadcastEnded,
    BroadcastStarted,
    IngestState,
    MediaSegment,
    RecorderResume,
    SegmentRecorded,
)
from review.evidence_checks import PassResult, VerifyScheduler
from review.monitor_status import STATUS_FILE
from store import repo
from store.db import Database
from store.models import AlertRow, Broadcast, MediaSegmentRow, UtteranceRow
from store.paths import resolve_stored, to_stored
from store.prices import SqlPriceHistory, link_claim_alerts, save_claims

__all__ = ["STATUS_FILE", "Monitor"]

logger = logging.getLogger(__name__)


def _default_holder(dirs: list[Path], cfg: MonitorConfig) -> RuleHolder:
    from detectors.engine import RuleHolder
    from detectors.semantic import holder_with_semantic

    r = cfg.rules
    holder = RuleHolder(
        dirs,
        min_interval_s=r.reload_interval_s,
        reload_timeout_s=r.reload_timeout_s,
        line_budget_s=r.line_budget_ms / 1000 or None,
    )
    # the learned stage behind the rules when enabled: its detections and its hash in the version
    return holder_with_semantic(holder, cfg.semantic)  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Rec:
    """What is on disk for a broadcast: the recorded length, and whether recording is over."""

    end_s: float = 0.0
    done: bool = False


@dataclass(slots=True)
class _Stream:
    entry: StreamEntry
    holder: RuleHolder
    pre_roll_s: float
    post_roll_s: float
    recorder: Recorder | None = None
    state: IngestState | None = None
    broadcast_id: str | None = None
    broadcast_started_ts: float | None = None
    alerts: int = 0
    lagging: bool = False
    last_lag_warn: float = 0.0
    max_lag_s: float = 0.0


@dataclass(slots=True)
class MonitorStats:
    alerts: int = 0
    started: float = field(default_factory=time.monotonic)


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
        self.evidence_root = self.data_dir / "evidence"
        self._clock = clock
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.writer = DbWriter(db)
        self.stats = MonitorStats()
        self._rec: dict[str, _Rec] = {}
        self.asr = AsrWorker(
            cfg.live_asr.options(),
            self,
            partial(live_transcriber, cfg),
            catchup_cap_s=cfg.live_asr.lag_warn_s,
            clock=clock,
            transcriber=transcriber,
        )
        self._threads: list[threading.Thread] = []
        holders: dict[tuple[Path, ...], RuleHolder] = {}
        make_holder = rule_holder or (lambda dirs: _default_holder(dirs, cfg))
        self._streams: dict[str, _Stream] = {}
        for entry in cfg.streams_resolved():
            dirs = tuple(cfg.rule_dirs() + list(entry.rule_dirs))
            if dirs not in holders:
                holders[dirs] = make_holder(list(dirs))
            pre, post = cfg.pre_post_roll(entry)
            self._streams[entry.id] = _Stream(entry, holders[dirs], pre, post)
        base_dirs = tuple(cfg.rule_dirs())
        self._base_holder = holders.get(base_dirs) or make_holder(list(base_dirs))
        self._holders = {**holders, base_dirs: self._base_holder}
        for h in self._holders.values():
            if hasattr(h, "on_failure"):  # a refused reload: status, metrics, log (holder) and ops webhook
                h.on_failure = self._rules_reload_failed
        self.webhooks = WebhookDelivery(db, cfg.webhooks, write=self.writer.call) if cfg.webhooks else None
        self.writer.on_event = self._writer_event  # a full database disk or writer queue: ops webhook
        self._status_write_failed = False
        self._price = PriceChecker(load_price_config(cfg.price_config), SqlPriceHistory(db))
        self.analysis = AnalysisWorker(cfg.alerts, self, self._price)
        # the evidence verification pass (the review app's, shared): a missing or altered clip is recorded
        # and shown in the status even when no review app runs
        every = cfg.evidence.verify_interval_s
        self.verifier = VerifyScheduler(
            db, self.data_dir, every, first_delay_s=min(5.0, every), on_pass=self._verified
        )
        self._verify_bad: set[tuple[str, str, str]] = set()
        evidence_port = LiveEvidence(
            cfg.alerts,
            db,
            self.writer,
            rolls=self._rolls,
            recording=self.recording,
            webhooks=lambda: self.webhooks,
        )
        self.evidence = EvidenceWorker(
            cfg.alerts,
            evidence_port,
            evidence_root=self.evidence_root,
            tmp_dir=self.data_dir / "tmp",
            tool_version=__version__,
            clock=clock,
        )
        v = cfg.video
        self._video = (
            VideoWorker(v, self.analysis.put)
            if v.enabled and (v.screen.enabled or v.visual.enabled)
            else None
        )

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def stream_ids(self) -> list[str]:
        return list(self._streams)

    @property
    def transcriber(self) -> Transcriber:
        return self.asr.transcriber

    def start(self) -> None:
        """Load the model, resume unfinished work from the database, then start every stream."""
        _ = self.transcriber  # fail before recording anything if the model cannot load
        self.writer.start()
        self._resume()
        self.analysis.start(self._guard)
        self.asr.start(self._guard)
        self.evidence.start(self._guard)
        t = threading.Thread(target=self._guard(self._housekeeping_loop), name="housekeeping", daemon=True)
        t.start()
        self._threads.append(t)
        if self.webhooks is not None:
            self.webhooks.start()
        self.verifier.start()
        if self._video is not None:
            self._video.start()
        keep_video = self.cfg.video.enabled
        for st in self._streams.values():
            st.recorder = Recorder(
                st.entry.id,
                st.entry.url,
                st.entry,
                self.rec_root,
                self,
                keep_video=st.entry.keeps_video(keep_video),
                clock=self._clock,
                resume=self._recorder_resume(st.entry.id),
            )
            st.recorder.start()
        logger.info("monitoring %d stream(s); data in %s", len(self._streams), self.data_dir)

    def _recorder_resume(self, stream_id: str) -> RecorderResume | None:
        """Where the last run stopped recording this stream (its broadcasts are closed by `_resume`), so the
        restart rejoins HLS after the last segment recorded, while the playlist still offers the rest."""
        with self.db.session() as s:
            b = s.scalar(
                select(Broadcast)
                .where(Broadcast.stream_id == stream_id, Broadcast.kind == "live")
                .order_by(Broadcast.started_ts.desc())
                .limit(1)
            )
            if b is None:
                return None
            meta = b.meta or {}
            src0 = meta.get("source_start_s")
            seq = meta.get("hls_last_seq")
            return RecorderResume(
                int(seq) if seq is not None else None,
                float(src0) + float(b.duration_s or 0.0) if src0 is not None else None,
                b.ended_ts,
            )

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        logger.info("stopping: closing connections")
        recorders = [st.recorder for st in self._streams.values() if st.recorder is not None]
        stoppers = [threading.Thread(target=r.stop, daemon=True) for r in recorders]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(20)
        self._stop.set()
        self.asr.stop()
        if self._video is not None:
            self._video.stop()
        self.evidence.stop()
        for t in self._threads:
            t.join(30)
        self.analysis.stop()
        self.verifier.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.writer.stop()
        self._write_status(stopped=True)
        logger.info("stopped")

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:
                logger.exception("monitor thread %s died", threading.current_thread().name)
                raise

        return run

    # -- recorder events (recorder threads) ----------------------------------------------------------

    def broadcast_started(self, event: BroadcastStarted) -> None:
        st = self._streams[event.stream_id]
        rules_version = st.holder.maybe_reload().version
        self.writer.submit(
            partial(
                LiveStore.start_broadcast,
                broadcast_id=event.broadcast_id,
                stream_id=event.stream_id,
                url=event.source,
                name=st.entry.name or st.entry.id,
                folder=event.dir,
                started_ts=event.started_ts,
                source_start_s=event.source_start_s,
                rules_version=rules_version,
                video=self._video is not None and st.entry.keeps_video(self.cfg.video.enabled),
                media_gap_s=event.media_gap_s,
                hls_join=event.hls_join.as_dict() if event.hls_join is not None else None,
            )
        )
        with self._lock:
            st.broadcast_id = event.broadcast_id
            st.broadcast_started_ts = event.started_ts
            self._rec[event.broadcast_id] = _Rec()
        self.asr.open(
            event.broadcast_id,
            event.stream_id,
            Path(event.dir),
            event.started_ts,
            # the source's clock at start_s = 0: places this connection's alerts beside the previous
            # connection's (LiveStore.repeats)
            source_start_s=event.source_start_s,
        )
        logger.info("stream %s: broadcast %s started", event.stream_id, event.broadcast_id)

    def segment_recorded(self, event: SegmentRecorded) -> None:
        seg = event.segment
        self.writer.submit(
            partial(
                LiveStore.add_segment,
                broadcast_id=seg.broadcast_id,
                seq=seg.seq,
                path=seg.path,
                start_s=seg.start_s,
                duration_s=seg.duration_s,
                size=event.size,
                created_ts=event.recorded_ts,
                hls_seq=event.hls_seq,
            )
        )
        with self._lock:
            rec = self._rec.setdefault(seg.broadcast_id, _Rec())
            rec.end_s = max(rec.end_s, seg.end_s)
        ctx = self.asr.refine_start(seg.broadcast_id, event.recorded_ts, seg.end_s)  # the live clock
        if ctx is not None:
            with self._lock:
                self._streams[ctx.stream_id].broadcast_started_ts = ctx.started_ts
            self.writer.submit(
                partial(LiveStore.refine_start, broadcast_id=seg.broadcast_id, started_ts=ctx.started_ts)
            )
        stream = self._video_stream(seg.broadcast_id)
        if stream is not None and self._video is not None:
            self._video.submit(seg.broadcast_id, stream, seg)

    def broadcast_ended(self, event: BroadcastEnded) -> None:
        self.writer.submit(
            partial(
                LiveStore.end_broadcast,
                broadcast_id=event.broadcast_id,
                ended_ts=event.ended_ts,
                end_s=event.end_s,
                reason=event.reason,
            )
        )
        stream = self._video_stream(event.broadcast_id)
        if stream is not None and self._video is not None:
            self._video.end(event.broadcast_id, stream)
        with self._lock:
            rec = self._rec.setdefault(event.broadcast_id, _Rec())
            rec.end_s = max(rec.end_s, event.end_s)
            rec.done = True
            st = self._streams[event.stream_id]
            if st.broadcast_id == event.broadcast_id:
                st.broadcast_id = None
        logger.info(
            "stream %s: broadcast %s ended after %.1f s (%s)",
            event.stream_id,
            event.broadcast_id,
            event.end_s,
            event.reason,
        )

    def _video_stream(self, broadcast_id: str) -> str | None:
        """The stream of a live broadcast whose recording keeps video for the video worker, else None."""
        if self._video is None:
            return None
        ctx = self.asr.get(broadcast_id)
        st = self._streams.get(ctx.stream_id) if ctx is not None else None
        if st is None or not st.entry.keeps_video(self.cfg.video.enabled):
            return None
        return st.entry.id

    def state_changed(self, event: IngestState) -> None:
        with self._lock:
            self._streams[event.stream_id].state = event

    # -- ASR worker (AsrPort) -------------------------------------------------------------------------

    def recording(self, broadcast_id: str) -> tuple[float, bool] | None:
        """(recorded end, recording over) of a broadcast (AsrPort)."""
        with self._lock:
            rec = self._rec.get(broadcast_id)
            return None if rec is None else (rec.end_s, rec.done)

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
            then=partial(self._to_analysis, batch),
        )

    def _to_analysis(self, batch: TranscriptBatch, _stored: object) -> None:
        self.analysis.put(batch)

    # -- analysis worker ----------------------------------------------------------------------------------

    def rules(self, stream_id: str) -> RuleSet:
        """The stream's rule set, reloaded when its packs changed (AnalysisPort)."""
        st = self._streams.get(stream_id)
        return (st.holder if st is not None else self._base_holder).maybe_reload()

    def stored_claims(self, broadcast_id: str) -> list[PriceClaim]:
        with self.db.session() as s:
            return stored_claims(s, broadcast_id)

    def deliver(self, result: AnalysisResult) -> None:
        """An analysed batch (the analysis thread, AnalysisPort): the alerts, claims, captions and the
        watermark are stored in one transaction by the writer; closed alerts go to the evidence worker."""
        batch = result.batch
        st = self._streams.get(batch.stream_id)
        pre, post = (
            (st.pre_roll_s, st.post_roll_s)
            if st is not None
            else (self.cfg.alerts.pre_roll_s, self.cfg.alerts.post_roll_s)
        )
        alerts, closed = result.alerts, result.closed
        started_ts, source_start_s = result.started_ts, result.source_start_s
        utts = batch.captions if isinstance(batch, VideoBatch) else batch.utterances
        hooks = self.cfg.webhooks
        folder = self._folder(batch.broadcast_id)

        def tx(s: Session) -> list[str]:
            new: list[str] = []
            now = self._clock()
            for alert in alerts:
                payload = _live_payload(alert, batch.stream_id, folder)
                if s.get(AlertRow, alert.alert_id) is None:
                    earlier = LiveStore.repeats(s, alert, batch.stream_id, source_start_s)
                    if earlier is not None:
                        logger.info(
                            "alert %s repeats %s of the previous connection (same moment of the "
                            "source); not raised again",
                            alert.alert_id,
                            earlier,
                        )
                        continue
                if LiveStore.upsert_alert(s, alert, payload, batch.stream_id):
                    new.append(alert.alert_id)
                    enqueue(s, alert.alert_id, alert.category, alert.severity, hooks, now)
                LiveStore.pin_range(s, batch.broadcast_id, alert.start_s - pre, alert.end_s + post)
            if result.new_claims:
                save_claims(
                    s,
                    broadcast_id=batch.broadcast_id,
                    stream_id=batch.stream_id,
                    started_ts=started_ts,
                    claims=list(result.claims),
                )
            if result.new_claims or any(a.category == "price_fraud" for a in alerts):
                link_claim_alerts(s, batch.broadcast_id)
            if isinstance(batch, VideoBatch):
                LiveStore.store_captions(
                    s, batch.broadcast_id, utts, batch.done_s, batch.final, batch.resume_s
                )
            else:
                LiveStore.mark_analyzed(
                    s, batch.broadcast_id, [u.index for u in utts], batch.done_s, batch.final
                )
            return new

        def after(new: list[str]) -> None:
            for alert in alerts:
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
            for alert_id in closed:
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
            if b is None:
                return None, None
            return b.started_ts, (b.meta or {}).get("source_start_s")

    def _folder(self, broadcast_id: str) -> str:
        ctx = self.asr.get(broadcast_id)
        if ctx is not None:
            return to_stored(ctx.folder, self.db.data_dir)
        with self.db.session() as s:
            b = s.get(Broadcast, broadcast_id)
            return str((b.meta or {}).get("dir", "")) if b is not None else ""

    def _media_file(self, stored: str) -> Path:
        """Where a stored recording path (relative to the data directory) is now."""
        return resolve_stored(stored, self.db.data_dir)

    # -- evidence worker ---------------------------------------------------------------------------------

    def _rolls(self, stream_id: str) -> tuple[float, float, str | None] | None:
        st = self._streams.get(stream_id)
        return None if st is None else (st.pre_roll_s, st.post_roll_s, st.entry.name)

    def _try_evidence(self, alert_id: str) -> bool:
        """Cut one alert's evidence now if its post-roll is on disk (True when done with it)."""
        return self.evidence.cut(alert_id)

    # -- restart --------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Pick up what a previous run left: interrupted broadcasts, transcripts, analysis, evidence."""
        with self.db.session() as s:
            todo = s.scalars(
                select(Broadcast)
                .where(Broadcast.kind == "live", Broadcast.status.in_(["live", "ended"]))
                .order_by(Broadcast.started_ts)
            ).all()
        now = self._clock()
        for b in todo:
            folder = self._media_file(str((b.meta or {}).get("dir", "")))
            if b.status == "live":

                def close(s: Session, bid: str = b.id, f: Path = folder) -> float:
                    end_s = rescan_segments(s, bid, f)
                    s.flush()
                    last = s.scalar(
                        select(MediaSegmentRow.created_ts)
                        .where(MediaSegmentRow.broadcast_id == bid)
                        .order_by(MediaSegmentRow.created_ts.desc())
                        .limit(1)
                    )
                    LiveStore.end_broadcast(s, bid, last or now, end_s, "monitor stopped unexpectedly")
                    return end_s

                end_s = self.writer.call(close)
                logger.warning(
                    "broadcast %s was interrupted (monitor not stopped cleanly); resuming it", b.id
                )
            else:
                end_s = b.duration_s or 0.0
            self._rec[b.id] = _Rec(end_s, True)
            meta = dict(b.meta or {})
            if not meta.get("asr_complete"):
                self._resume_asr(b, folder, float(meta.get("asr_done_s", 0.0)))
            if meta.get("video_expected") and not meta.get("video_complete"):
                self._resume_video(b, float(meta.get("video_resume_s", meta.get("video_done_s", 0.0))))
        self._resume_analysis(todo)
        with self.db.session() as s:
            pending = s.scalars(select(AlertRow).where(AlertRow.evidence_status == "pending")).all()
            analyzed = {
                b.id: float((b.meta or {}).get("analyzed_s", 0.0))
                for b in s.scalars(
                    select(Broadcast).where(Broadcast.id.in_({r.broadcast_id for r in pending}))
                )
            }
            complete = {
                b.id
                for b in s.scalars(
                    select(Broadcast).where(Broadcast.id.in_({r.broadcast_id for r in pending}))
                )
                if (b.meta or {}).get("analysis_complete")
            }
            for row in pending:
                if (
                    row.broadcast_id not in complete
                    and row.end_s + self.cfg.alerts.merge_gap_s >= analyzed.get(row.broadcast_id, 0.0)
                ):
                    self.analysis.restore(alert_from_row(s, row))
                else:
                    self.evidence.put(row.id)

    def _resume_asr(self, b: Broadcast, folder: Path, done_s: float) -> None:
        with self.db.session() as s:
            first = s.scalar(
                select(MediaSegmentRow.seq)
                .where(
                    MediaSegmentRow.broadcast_id == b.id,
                    MediaSegmentRow.start_s + MediaSegmentRow.duration_s > done_s,
                )
                .order_by(MediaSegmentRow.seq)
                .limit(1)
            )
            index = next_utterance_index(s, b.id)
            last = s.scalar(
                select(UtteranceRow.text)
                .where(UtteranceRow.broadcast_id == b.id)
                .order_by(UtteranceRow.idx.desc())
                .limit(1)
            )
        self.asr.open(
            b.id,
            b.stream_id or "",
            folder,
            b.started_ts or 0.0,
            start_s=done_s,
            first_index=index,
            prompt=last or "",
            catchup=True,
            first_seq=first,
        )
        logger.info("broadcast %s: transcribing the rest from %.1f s", b.id, done_s)

    def _resume_video(self, b: Broadcast, done_s: float) -> None:
        """Queue the recorded files the video worker had not read, then the broadcast's end."""
        if self._video is None:
            logger.warning(
                "broadcast %s: its video was read up to %.1f s and video analysis is now off; the rest is "
                "left unread",
                b.id,
                done_s,
            )
            self.writer.call(
                partial(LiveStore.store_captions, broadcast_id=b.id, captions=(), done_s=done_s, final=True)
            )
            return
        with self.db.session() as s:
            rows = s.scalars(
                select(MediaSegmentRow)
                .where(
                    MediaSegmentRow.broadcast_id == b.id,
                    MediaSegmentRow.deleted.is_(False),
                    MediaSegmentRow.start_s + MediaSegmentRow.duration_s > done_s,
                )
                .order_by(MediaSegmentRow.seq)
            ).all()
            first_index = next_caption_index(s, b.id)
        stream = b.stream_id or ""  # read even if the stream has left the config: it was recorded
        for r in rows:
            seg = MediaSegment(b.id, r.seq, str(self._media_file(r.path)), r.start_s, r.duration_s)
            self._video.submit(b.id, stream, seg, first_caption_index=first_index)
        self._video.end(b.id, stream)
        logger.info(
            "broadcast %s: reading the rest of its video from %.1f s (%d files)", b.id, done_s, len(rows)
        )

    def _resume_analysis(self, broadcasts: Sequence[Broadcast]) -> None:
        with self.db.session() as s:
            for b in broadcasts:
                meta = b.meta or {}
                rows = s.scalars(
                    select(UtteranceRow)
                    .where(
                        UtteranceRow.broadcast_id == b.id,
                        UtteranceRow.source == "speech",
                        UtteranceRow.analyzed.is_(False),
                    )
                    .order_by(UtteranceRow.idx)
                ).all()
                if not rows and not (meta.get("asr_complete") and not meta.get("analysis_complete")):
                    continue
                utts = tuple(repo.utterance_from_row(r) for r in rows)
                self.analysis.put(
                    TranscriptBatch(
                        b.id,
                        b.stream_id or "",
                        utts,
                        float(meta.get("asr_done_s", 0.0)),
                        bool(meta.get("asr_complete")),
                    )
                )

    # -- housekeeping ---------------------------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        next_retention = time.monotonic() + 5.0
        while not self._stop.wait(1.0):
            self._check_lag()
            try:
                self._write_status()
            except Exception:
                logger.exception("writing the status file failed")
            if time.monotonic() >= next_retention:
                if self.writer.waiting_for_space:  # its writes would wait behind the held ones: later
                    next_retention = time.monotonic() + 30.0
                    logger.warning("retention postponed: the database is waiting for disk space")
                    continue
                next_retention = time.monotonic() + self.cfg.retention_interval_s
                try:
                    self.retention()
                except Exception:
                    logger.exception("retention failed")

    def retention(self) -> int:
        policies = {sid: st.entry.retention.policy() for sid, st in self._streams.items()}
        quota = None if self.cfg.disk_quota_gb is None else int(self.cfg.disk_quota_gb * 1024**3)
        done = apply_retention(
            self.db,
            policies,
            self._clock(),
            pre_roll_s=self.cfg.alerts.pre_roll_s,
            post_roll_s=self.cfg.alerts.post_roll_s,
            total_max_bytes=quota,
            write=self.writer.call,
        )
        return len(done)

    def _check_lag(self) -> None:
        now = self._clock()
        warn = self.cfg.live_asr.lag_warn_s
        for ctx in self.asr.active():
            lag = self.asr.lag_s(ctx, now)
            ctx.max_lag_s = max(ctx.max_lag_s, lag)
            st = self._streams.get(ctx.stream_id)
            if st is None or ctx.catchup:
                continue
            st.max_lag_s = max(st.max_lag_s, lag)
            if lag > warn and (not st.lagging or time.monotonic() - st.last_lag_warn > 30):
                st.lagging, st.last_lag_warn = True, time.monotonic()
                logger.error(
                    "ASR LAG: stream %s is %.1f s behind the live edge (warn at %.0f s): the machine "
                    "cannot keep up with %d stream(s); alerts are late",
                    ctx.stream_id,
                    lag,
                    warn,
                    len(self._streams),
                )
            elif st.lagging and lag < warn / 2:
                st.lagging = False
                logger.warning("ASR lag of stream %s recovered (%.1f s)", ctx.stream_id, lag)

    def status(self) -> dict[str, Any]:
        """A snapshot for `livewatch status` and /metrics (see review/monitor_status.py)."""
        now = self._clock()
        ctxs = {a.broadcast_id: a for a in self.asr.active()}
        with self._lock:
            streams: dict[str, Any] = {}
            for sid, st in self._streams.items():
                ctx = ctxs.get(st.broadcast_id or "")
                lag = self.asr.lag_s(ctx, now) if ctx is not None else None
                streams[sid] = {
                    "name": st.entry.name or sid,
                    "url": st.entry.url,
                    "state": st.state.state if st.state else "starting",
                    "detail": st.state.detail if st.state else "",
                    "state_since_ts": st.state.since_ts if st.state else None,
                    "next_try_ts": st.state.next_try_ts if st.state else None,
                    "broadcast_id": st.broadcast_id,
                    "broadcast_started_ts": st.broadcast_started_ts if st.broadcast_id else None,
                    "reconnects": st.recorder.reconnects if st.recorder else 0,
                    "asr_lag_s": None if lag is None else round(lag, 2),
                    "max_asr_lag_s": round(st.max_lag_s, 2),
                    "lagging": st.lagging,
                    "alerts": st.alerts,
                }
            catchup = {
                bid: {"stream_id": a.stream_id, "backlog_s": round(self.asr.lag_s(a, now), 1)}
                for bid, a in ctxs.items()
                if a.catchup
            }
        up = time.monotonic() - self.stats.started
        return {
            "pid": os.getpid(),
            "updated_ts": now,
            "version": __version__,
            "asr": {
                "passes": self.asr.stats.passes,
                "busy_fraction": round(self.asr.stats.busy_s / max(up, 1e-9), 3),
                "utterances": self.asr.stats.utterances,
            },
            "video": None
            if self._video is None
            else {
                "files": self._video.stats.files,
                "frames": self._video.stats.frames,
                "captions": self._video.stats.captions,
                "visual": self._video.stats.visual,
                "busy_fraction": round(self._video.stats.busy_s / max(up, 1e-9), 3),
                "backlog_files": self._video.backlog(),
            },
            "alerts": self.stats.alerts,
            "evidence": self.evidence.stats.evidence,
            "evidence_deferred": self.evidence.deferred,
            "writer_backlog": self.writer.backlog,
            "db_writer": self.writer.status(),
            "streams": streams,
            "catchup": catchup,
            "rules": self._rules_status(),
            "evidence_verify": self.verifier.status(),
        }

    def _verified(self, result: PassResult) -> None:
        """After a verification pass (its thread): evidence files newly found missing or changed, or a
        manifest signature that no longer holds, go to the ops webhook; the log has each file already."""
        bad = set(result.bad)
        new = sorted(bad - self._verify_bad)
        self._verify_bad = bad
        if new and self.webhooks is not None:
            self.webhooks.notify_ops(
                "evidence_not_as_captured",
                message=f"{len(new)} evidence file(s) newly missing or changed",
                files=[{"alert_id": a, "name": n, "state": st} for a, n, st in new[:50]],
                pid=os.getpid(),
            )

    def _writer_event(self, event: str, **fields: Any) -> None:
        """The database writer's disk-full / queue-full episodes (it logs them and shows them in its
        status): to the ops webhook."""
        if self.webhooks is not None:
            self.webhooks.notify_ops(event, **fields, pid=os.getpid())

    def _rules_reload_failed(self, message: str) -> None:
        """A holder refused a reload (it logged it and keeps the old set): tell the ops webhook now;
        status.json, `livewatch status` and /metrics show it from the holder's state."""
        if self.webhooks is not None:
            self.webhooks.notify_ops("rules_reload_failed", message=message, pid=os.getpid())

    def _rules_status(self) -> dict[str, Any]:
        from detectors.engine import MATCH_STATS

        holders = []
        for h in {id(h): h for h in self._holders.values()}.values():
            get = getattr(h, "status", None)
            if callable(get):
                holders.append(get())
        return {"holders": holders, "matching": MATCH_STATS.snapshot()}

    def _write_status(self, stopped: bool = False) -> None:
        """status.json by an atomic rename; the file is padded with spaces (valid JSON) to whole pages
        plus room, so that on a full disk, where the new copy cannot be written, the status is rewritten
        in place in the space the file already holds, and still shows what is wrong."""
        data = self.status()
        data["running"] = not stopped
        path = self.data_dir / STATUS_FILE
        body = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
        size = -(-(len(body) + _STATUS_ROOM) // 4096) * 4096
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(body.ljust(size))
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if not _no_space(e):
                raise
            if not _rewrite_in_place(path, body):
                if not self._status_write_failed:
                    logger.error("status file %s cannot be written: %s", path, e)
                self._status_write_failed = True
                return
            if not self._status_write_failed:
                logger.warning("disk of %s full: the status file is rewritten in place", path)
            self._status_write_failed = True
            return
        self._status_write_failed = False


_STATUS_ROOM = 8192  # bytes the status may grow by while the disk is full


def _rewrite_in_place(path: Path, body: bytes) -> bool:
    """Overwrite `path` with `body` padded to the file's present size (no new blocks). False if it
    does not fit or the file cannot be opened."""
    try:
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if len(body) > size:
                return False
            f.write(body.ljust(size))
        return True
    except OSError:
        return False


def live_transcriber(cfg: MonitorConfig) -> Transcriber:
    """The monitor's one Whisper model: `asr` with the live overrides, decoding bounded per pass."""
    la = cfg.live_asr
    live = LiveDecoding(
        trim_encoder=la.trim_encoder,
        encoder_margin_s=la.encoder_margin_s,
        encoder_min_s=la.encoder_min_s,
        max_new_tokens=la.max_new_tokens,
        no_repeat_ngram_size=la.no_repeat_ngram_size,
    )
    return build_transcriber(cfg.live_asr_config(), live=live)


def _no_space(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is a full disk or quota (see live_store.no_space)."""
    return no_space(exc)


def _live_payload(alert: Alert, stream_id: str | None, folder: str) -> dict[str, Any]:
    payload = alert_payload(alert, stream_id=stream_id, media_path=folder)
    payload.update({"live": True, "evidence_status": "pending", "evidence": None})
    return payload
