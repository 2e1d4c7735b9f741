"""The evidence worker's port (alerts/evidence_worker.py) on the live store: what an alert's evidence is
cut from, read from the database, and its result written through the database's one writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from alerts.config import AlertsConfig
from alerts.evidence_worker import WAIT, EvidenceJob, SegmentFile
from alerts.types import Evidence
from app.webhooks import WebhookDelivery
from store import repo
from store.db import Database
from store.live import LiveStore, alert_from_row
from store.models import AlertRow, Broadcast, MediaSegmentRow
from store.paths import resolve_stored
from store.writer import DbWriter

__all__ = ["LiveEvidence"]


class LiveEvidence:
    """`EvidencePort` for the live monitor. `rolls(stream_id)` gives a stream's (pre-roll, post-roll,
    name) or None for a stream no longer configured; `recording(broadcast_id)` the recorded end and
    whether recording is over (None: not recorded by this run, so over)."""

    def __init__(
        self,
        cfg: AlertsConfig,
        db: Database,
        writer: DbWriter,
        *,
        rolls: Callable[[str], tuple[float, float, str | None] | None],
        recording: Callable[[str], tuple[float, bool] | None],
        webhooks: Callable[[], WebhookDelivery | None],
        owner: str | None = None,
        unowned: bool = True,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.writer = writer
        self._rolls = rolls
        self._recording = recording
        self._webhooks = webhooks
        self._owner = owner
        self._unowned = unowned  # with an owner: also the broadcasts no monitor owns (scans, bus-published)

    def job(self, alert_id: str) -> EvidenceJob | Literal["wait"] | None:
        with self.db.session() as s:
            row = s.get(AlertRow, alert_id)
            if row is None or row.evidence_status != "pending":
                return None
            b = s.get(Broadcast, row.broadcast_id)
            rolls = self._rolls(row.stream_id or "")
            pre, post, name = (
                rolls if rolls is not None else (self.cfg.pre_roll_s, self.cfg.post_roll_s, None)
            )
            rec = self._recording(row.broadcast_id)
            recorded_end, done = rec if rec is not None else ((b.duration_s or 0.0) if b else 0.0, True)
            if not done and recorded_end < row.end_s + post:
                return WAIT
            alert = alert_from_row(s, row)
            lo, hi = alert.start_s - pre, alert.end_s + post
            segs = s.scalars(
                select(MediaSegmentRow)
                .where(
                    MediaSegmentRow.broadcast_id == alert.broadcast_id,
                    MediaSegmentRow.deleted.is_(False),
                    MediaSegmentRow.start_s < hi,
                    MediaSegmentRow.start_s + MediaSegmentRow.duration_s > lo,
                )
                .order_by(MediaSegmentRow.seq)
            ).all()
            utts = repo.load_utterances(s, alert.broadcast_id)
            stream_info = {
                "stream_id": row.stream_id,
                "url": b.source if b else None,
                "name": name,
                "broadcast_id": alert.broadcast_id,
                "started_ts": b.started_ts if b else None,
                "source_start_s": b.source_start_s if b else None,
            }
            files = tuple(
                SegmentFile(sg.path, resolve_stored(sg.path, self.db.data_dir), sg.start_s, sg.duration_s)
                for sg in segs
            )
            return EvidenceJob(alert, files, tuple(utts), pre, post, stream_info, row.stream_id)

    def record(self, job: EvidenceJob, evidence: Evidence, payload: dict[str, Any]) -> None:
        alert_id, segs = job.alert.alert_id, job.segments

        def tx(s: Session) -> None:
            r = s.get(AlertRow, alert_id)
            if r is not None:
                r.context = payload["context"]
            repo.set_evidence(s, alert_id, evidence, payload)
            LiveStore.pin_range(
                s, job.alert.broadcast_id, segs[0].start_s, segs[-1].start_s + segs[-1].duration_s
            )

        self.writer.call(tx)
        self._wake_webhooks()

    def failed(self, alert_id: str, error: str) -> None:
        self.writer.submit(
            partial(LiveStore.evidence_failed, alert_id=alert_id, error=error),
            then=lambda _: self._wake_webhooks(),
        )

    def _wake_webhooks(self) -> None:
        """The alert's evidence is settled (committed): a deliverer that waits for evidence (a bus ingest
        worker's, app/bus_ingest.py) posts it now rather than at its next poll."""
        hooks = self._webhooks()
        if hooks is not None:
            hooks.wake()

    def deferred(self, alert_id: str, error: str) -> None:
        self.writer.submit(partial(LiveStore.evidence_deferred, alert_id=alert_id, error=error))

    def closed_but_pending(self) -> list[str]:
        """Alerts still without evidence although their transcript is complete past them; with an owner,
        only those of its broadcasts and (unless `unowned` is off) of broadcasts no monitor owns
        (store/leases.py)."""
        gap = self.cfg.merge_gap_s
        cond = [
            AlertRow.evidence_status == "pending",
            Broadcast.status != "failed",
            # the analysis of the alert's lane is past it: it will not grow any more (typed progress
            # columns, in SQL): speech by the analysis watermark, screen and visual by the video's
            or_(
                and_(
                    AlertRow.source == "speech",
                    or_(Broadcast.analysis_complete.is_(True), Broadcast.analyzed_s > AlertRow.end_s + gap + 1.0),
                ),
                and_(
                    AlertRow.source != "speech",
                    or_(
                        Broadcast.video_complete.is_(True),
                        # the video lane's watermark is where its oldest caption still on screen began
                        # (the analyzer's): a caption up now may still grow an alert it opened
                        func.coalesce(Broadcast.video_resume_s, Broadcast.video_done_s)
                        > AlertRow.end_s + gap + 1.0,
                        and_(Broadcast.video_expected.is_(False), Broadcast.analysis_complete.is_(True)),
                    ),
                ),
            ),
        ]
        if self._owner is not None:
            mine = Broadcast.owner == self._owner
            cond.append(or_(mine, Broadcast.owner.is_(None)) if self._unowned else mine)
        with self.db.session() as s:
            rows = s.scalars(
                select(AlertRow.id).join(Broadcast, Broadcast.id == AlertRow.broadcast_id).where(*cond)
            ).all()
        return list(rows)

    def notify_ops(self, event: str, **fields: Any) -> None:
        hooks = self._webhooks()
        if hooks is not None:
            hooks.notify_ops(event, **fields, pid=os.getpid())
