"""Transaction bodies for live broadcasts (each takes the writer's session; see store.writer) and the
reads the monitor's resume needs: broadcasts, gaps, recorded files, transcripts and watermarks, alerts
with their detections, evidence status, price claims.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alerts.types import Alert
from asr.types import Utterance
from detectors.types import Detection, PriceClaim
from ingest import ffmpeg
from ingest.recorder import read_segment_list
from store import repo
from store.models import (
    AlertRow,
    Broadcast,
    BroadcastGap,
    DetectionRow,
    MediaSegmentRow,
    PriceClaimRow,
    UtteranceRow,
)
from store.paths import session_data_dir, to_stored
from store.prices import claim_from_row

__all__ = ["LiveStore", "alert_from_row", "next_caption_index", "next_utterance_index", "rescan_segments", "stored_claims"]

logger = logging.getLogger(__name__)

CAPTION_SAME_S = 1.0  # seconds: see LiveStore.store_captions


class LiveStore:
    """Transaction bodies for live broadcasts: each function takes the writer's session."""

    # -- broadcasts, gaps, segments -------------------------------------------------------------------

    @staticmethod
    def start_broadcast(
        s: Session,
        *,
        broadcast_id: str,
        stream_id: str,
        url: str,
        name: str,
        folder: str,
        started_ts: float,
        source_start_s: float | None,
        rules_version: str,
        video: bool = False,
        media_gap_s: float | None = None,
        hls_join: dict[str, int | None] | None = None,
        owner: str | None = None,
    ) -> None:
        """A new broadcast row; `video`: the video worker reads it too, so it is done only when both are;
        `owner`: the monitor instance recording it (store/leases.py).

        It closes the stream's open gap. With `media_gap_s` (the hole on the source's clock, see
        `ingest.types.BroadcastStarted`) the gap is placed on the media timeline: it starts when the
        previous broadcast's last recorded moment was live (its start + its recorded length) and lasts
        exactly the media not recorded, 0 when the rejoin lost nothing. Without it, the wall-clock
        times of the last data and of the new connection bound it.
        """
        repo.ensure_stream(s, stream_id, url, name)
        s.add(
            Broadcast(
                id=broadcast_id,
                stream_id=stream_id,
                kind="live",
                source=url,
                started_ts=started_ts,
                status="live",
                rules_version=rules_version,
                created_ts=time.time(),
                owner=owner,
                folder=to_stored(folder, session_data_dir(s)),  # relative to the data directory
                source_start_s=source_start_s,
                asr_done_s=0.0,
                analyzed_s=0.0,
                video_expected=bool(video),
                video_done_s=0.0,
                media_gap_s=media_gap_s,
                meta={"hls_join": hls_join} if hls_join is not None else {},
            )
        )
        gap = s.scalar(
            select(BroadcastGap)
            .where(BroadcastGap.stream_id == stream_id, BroadcastGap.end_ts.is_(None))
            .order_by(BroadcastGap.start_ts.desc())
        )
        prev = s.scalar(
            select(Broadcast)
            .where(Broadcast.stream_id == stream_id, Broadcast.kind == "live", Broadcast.id != broadcast_id)
            .order_by(Broadcast.started_ts.desc())
        )
        if gap is not None:
            if (
                media_gap_s is not None
                and prev is not None
                and prev.ended_ts == gap.start_ts
                and prev.started_ts is not None
                and prev.duration_s is not None
            ):
                gap.start_ts = prev.started_ts + prev.duration_s
                gap.end_ts = gap.start_ts + media_gap_s
                gap.reason = (
                    f"{gap.reason}; {media_gap_s:.2f} s of media not recorded (source clock)"
                    if media_gap_s > 0
                    else f"{gap.reason}; no media lost (rejoined where the recording stopped)"
                )
            else:
                gap.end_ts = started_ts
            return
        if prev is not None and prev.ended_ts is not None and prev.ended_ts < started_ts:
            s.add(
                BroadcastGap(
                    stream_id=stream_id, start_ts=prev.ended_ts, end_ts=started_ts, reason="not monitored"
                )
            )

    @staticmethod
    def end_broadcast(s: Session, broadcast_id: str, ended_ts: float, end_s: float, reason: str) -> None:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        b.ended_ts = ended_ts
        b.duration_s = end_s
        if b.status == "live":
            b.status = "ended"
        b.end_reason = reason
        if b.stream_id:
            s.add(BroadcastGap(stream_id=b.stream_id, start_ts=ended_ts, end_ts=None, reason=reason))

    @staticmethod
    def refine_start(s: Session, broadcast_id: str, started_ts: float) -> None:
        b = s.get(Broadcast, broadcast_id)
        if b is not None and (b.started_ts is None or started_ts < b.started_ts):
            b.started_ts = started_ts

    @staticmethod
    def add_segment(
        s: Session,
        broadcast_id: str,
        seq: int,
        path: str,
        start_s: float,
        duration_s: float,
        size: int,
        created_ts: float,
        hls_seq: int | None = None,
    ) -> None:
        """A recorded file's row; its path is stored relative to the data directory (store.paths), so
        the recordings stay found when the data directory moves."""
        if hls_seq is not None:  # where a restarted monitor rejoins the playlist (Monitor.start)
            b = s.get(Broadcast, broadcast_id)
            if b is not None and (b.hls_last_seq is None or b.hls_last_seq < hls_seq):
                b.hls_last_seq = hls_seq
        exists = s.scalar(
            select(MediaSegmentRow.id).where(
                MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.seq == seq
            )
        )
        if exists is None:
            s.add(
                MediaSegmentRow(
                    broadcast_id=broadcast_id,
                    seq=seq,
                    path=to_stored(path, session_data_dir(s)),
                    start_s=start_s,
                    duration_s=duration_s,
                    status="recorded",
                    size=size,
                    created_ts=created_ts,
                )
            )

    # -- transcript -----------------------------------------------------------------------------------

    @staticmethod
    def store_transcript(
        s: Session, broadcast_id: str, utterances: Sequence[Utterance], done_s: float, final: bool
    ) -> None:
        """Utterances and the ASR watermark together; files before the watermark become 'transcribed'."""
        for u in utterances:
            s.add(repo.utterance_to_row(broadcast_id, u))
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        b.asr_done_s = max(b.asr_done_s or 0.0, done_s)
        if final:
            b.asr_complete = True
        cond = [MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.status == "recorded"]
        if not final:
            cond.append(MediaSegmentRow.start_s + MediaSegmentRow.duration_s <= done_s)
        s.execute(update(MediaSegmentRow).where(*cond).values(status="transcribed"))

    @staticmethod
    def store_captions(
        s: Session,
        broadcast_id: str,
        captions: Sequence[Utterance],
        done_s: float,
        final: bool,
        resume_s: float | None = None,
    ) -> None:
        """Captions the video worker read (analysed in this same transaction) and its watermark.

        A caption already stored (same text and first moment: read again after a restart) is skipped.
        """
        # read again after a restart, a caption's first frame may be one sample earlier or later: the same
        # text first seen within CAPTION_SAME_S of a stored one is that caption
        tol = CAPTION_SAME_S
        stored: dict[str, list[float]] = {}
        for r in s.scalars(
            select(UtteranceRow).where(
                UtteranceRow.broadcast_id == broadcast_id,
                UtteranceRow.source == "screen",
                UtteranceRow.start_s >= min((u.start_s for u in captions), default=0.0) - tol,
            )
        ):
            stored.setdefault(r.text, []).append(r.start_s)
        for u in captions:
            if any(abs(u.start_s - t) <= tol for t in stored.get(u.text, ())):
                continue
            stored.setdefault(u.text, []).append(u.start_s)
            row = repo.utterance_to_row(broadcast_id, u)
            row.analyzed = True
            s.add(row)
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        b.video_done_s = max(b.video_done_s or 0.0, done_s)
        b.video_resume_s = b.video_done_s if resume_s is None else min(resume_s, b.video_done_s)
        if final:
            b.video_complete = True
            if b.analysis_complete and b.status == "ended":
                b.status = "done"

    @staticmethod
    def mark_analyzed(
        s: Session,
        broadcast_id: str,
        indexes: Iterable[int],
        analyzed_s: float,
        final: bool,
        stamps: Mapping[int, Mapping[str, float]] | None = None,
    ) -> None:
        """Lines analysed and the analysis watermark. `stamps`: per line index, the analysis side's hop
        stamps (asr/timing.py) merged into the line's meta, with `analyzed_ts` (this transaction)."""
        idx = list(indexes)
        if stamps:
            now = round(time.time(), 3)
            for r in s.scalars(
                select(UtteranceRow).where(
                    UtteranceRow.broadcast_id == broadcast_id,
                    UtteranceRow.source == "speech",
                    UtteranceRow.idx.in_(list(stamps)),
                )
            ):
                r.meta = {**(r.meta or {}), **stamps[r.idx], "analyzed_ts": now}
        if idx:
            s.execute(
                update(UtteranceRow)
                .where(
                    UtteranceRow.broadcast_id == broadcast_id,
                    UtteranceRow.source == "speech",
                    UtteranceRow.idx.in_(idx),
                )
                .values(analyzed=True)
            )
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            raise KeyError(broadcast_id)
        b.analyzed_s = max(b.analyzed_s or 0.0, analyzed_s)
        if final:
            b.analysis_complete = True
            if b.status == "ended" and (not b.video_expected or b.video_complete):
                b.status = "done"
        cond = [MediaSegmentRow.broadcast_id == broadcast_id, MediaSegmentRow.status == "transcribed"]
        if not final:
            cond.append(MediaSegmentRow.start_s + MediaSegmentRow.duration_s <= analyzed_s)
        s.execute(update(MediaSegmentRow).where(*cond).values(status="analyzed"))

    # -- alerts ---------------------------------------------------------------------------------------

    @staticmethod
    def upsert_alert(s: Session, alert: Alert, payload: dict[str, Any], stream_id: str) -> bool:
        """Store a new alert, or bring a stored one up to date with its grown group. True if new."""
        if repo.save_alert(s, alert, payload, None, stream_id):
            return True
        row = s.get(AlertRow, alert.alert_id)
        assert row is not None
        if row.evidence_status != "pending":
            return False  # evidence is cut and hashed: the alert is closed
        row.code, row.rule_id, row.severity, row.law = alert.code, alert.rule_id, alert.severity, alert.law
        row.start_s, row.end_s, row.text, row.context = alert.start_s, alert.end_s, alert.text, alert.context
        row.payload = payload
        s.execute(delete(DetectionRow).where(DetectionRow.alert_id == alert.alert_id))
        for d in alert.detections:
            s.add(_detection_row(alert, d))
        return False

    @staticmethod
    def repeats(
        s: Session, alert: Alert, stream_id: str, source_start_s: float | None, window_s: float = 30.0
    ) -> str | None:
        """The id of an alert of an *earlier connection* to the same stream that this one repeats.

        After a reconnect or a restart the new connection may begin a few seconds before the old one
        ended (an HLS player starts behind the live edge), so the same words are recorded twice. The
        source's own clock (`source_start_s`, ffmpeg's input start time) places both on one timeline;
        an alert of the same category and source overlapping on it, at nearly the same wall-clock time
        (within `window_s`: a replayed file is a new broadcast, not a repeat), is the same violation.
        When the recorder found the source's clock continuous across the reconnect (the broadcast's
        `media_gap_s`), the wall-clock window widens to an hour.
        Without a source clock nothing counts as a repeat.
        """
        if source_start_s is None or alert.start_ts is None:
            return None
        gap = s.scalar(select(Broadcast.media_gap_s).where(Broadcast.id == alert.broadcast_id))
        if gap is not None:
            # The recorder found the source's clock continuous across the reconnect (see
            # ingest.recorder.media_gap): a rejoin that asked the playlist again from older segments
            # (after a full disk) repeats media recorded long before on the wall clock, so only the
            # source clock decides, within the hour.
            window_s = max(window_s, 3600.0)
        lo, hi = source_start_s + alert.start_s, source_start_s + alert.end_s
        rows = s.execute(
            select(AlertRow.id, AlertRow.start_s, AlertRow.end_s, Broadcast.source_start_s)
            .join(Broadcast, Broadcast.id == AlertRow.broadcast_id)
            .where(
                AlertRow.stream_id == stream_id,
                AlertRow.broadcast_id != alert.broadcast_id,
                AlertRow.category == alert.category,
                AlertRow.source == alert.source,
                AlertRow.start_ts.between(alert.start_ts - window_s, alert.start_ts + window_s),
            )
        ).all()
        for other_id, o_start, o_end, o0 in rows:
            if o0 is not None and o0 + o_start <= hi + 0.5 and lo <= o0 + o_end + 0.5:
                return str(other_id)
        return None

    @staticmethod
    def pin_range(s: Session, broadcast_id: str, start_s: float, end_s: float) -> None:
        s.execute(
            update(MediaSegmentRow)
            .where(
                MediaSegmentRow.broadcast_id == broadcast_id,
                MediaSegmentRow.start_s < end_s,
                MediaSegmentRow.start_s + MediaSegmentRow.duration_s > start_s,
            )
            .values(pinned=True)
        )

    @staticmethod
    def evidence_deferred(s: Session, alert_id: str, error: str) -> None:
        """Evidence not written yet for a reason that may pass (a full disk): the alert stays pending,
        and says why until its evidence is written (which replaces the payload)."""
        row = s.get(AlertRow, alert_id)
        if row is not None and row.evidence_status == "pending":
            row.payload = {**(row.payload or {}), "evidence_error": error}

    @staticmethod
    def evidence_failed(s: Session, alert_id: str, error: str) -> None:
        row = s.get(AlertRow, alert_id)
        if row is not None:
            row.evidence_status = "failed"
            row.payload = {**(row.payload or {}), "evidence_error": error}


def stored_claims(s: Session, broadcast_id: str) -> list[PriceClaim]:
    """The price claims stored for a broadcast (to carry on after a restart)."""
    rows = s.scalars(
        select(PriceClaimRow)
        .where(PriceClaimRow.broadcast_id == broadcast_id)
        .order_by(PriceClaimRow.start_s, PriceClaimRow.id)
    ).all()
    return [claim_from_row(r) for r in rows]


def _detection_row(alert: Alert, d: Detection) -> DetectionRow:
    return DetectionRow(
        alert_id=alert.alert_id,
        broadcast_id=alert.broadcast_id,
        rule_id=d.rule_id,
        category=d.category,
        code=d.code,
        severity=d.severity,
        source=d.source,
        start_s=d.start_s,
        end_s=d.end_s,
        matched=d.matched,
        text=d.text,
        score=d.score,
        mode=d.mode,
        details=repo._jsonable(d.details),
    )


def detection_from_row(r: DetectionRow, law: str) -> Detection:
    return Detection(
        rule_id=r.rule_id,
        category=r.category,
        code=r.code,
        severity=r.severity,
        law=law,
        source=r.source,
        start_s=r.start_s,
        end_s=r.end_s,
        matched=r.matched,
        text=r.text,
        score=r.score,
        mode=r.mode,
        details=dict(r.details or {}),
    )


def alert_from_row(s: Session, row: AlertRow) -> Alert:
    dets = s.scalars(
        select(DetectionRow).where(DetectionRow.alert_id == row.id).order_by(DetectionRow.start_s)
    ).all()
    return Alert(
        alert_id=row.id,
        broadcast_id=row.broadcast_id,
        category=row.category,
        code=row.code,
        rule_id=row.rule_id,
        severity=row.severity,
        law=row.law,
        source=row.source,
        start_s=row.start_s,
        end_s=row.end_s,
        text=row.text,
        context=row.context,
        rules_version=row.rules_version,
        detections=tuple(detection_from_row(d, row.law) for d in dets),
        start_ts=row.start_ts,
    )


def next_caption_index(s: Session, broadcast_id: str) -> int:
    last = s.scalar(
        select(func.max(UtteranceRow.idx)).where(
            UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == "screen"
        )
    )
    return 0 if last is None else int(last) + 1


def next_utterance_index(s: Session, broadcast_id: str) -> int:
    n = s.scalar(
        select(func.max(UtteranceRow.idx)).where(
            UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == "speech"
        )
    )
    return 0 if n is None else int(n) + 1


def rescan_segments(s: Session, broadcast_id: str, folder: Path) -> float:
    """After a crash: add rows for files on disk the database missed. Returns the recorded length (s).

    `folder` is where the broadcast's files are now (its stored folder resolved against the data
    directory); rows are stored relative to the data directory like `LiveStore.add_segment`'s."""
    known = {
        seq: (st, d)
        for seq, st, d in s.execute(
            select(MediaSegmentRow.seq, MediaSegmentRow.start_s, MediaSegmentRow.duration_s).where(
                MediaSegmentRow.broadcast_id == broadcast_id
            )
        )
    }
    listed = {
        int(Path(name).stem.split("_")[-1]): (st, en)
        for name, st, en in read_segment_list(folder / ffmpeg.SEGMENT_LIST)
    }
    end_s = max((st + d for st, d in known.values()), default=0.0)
    for path in sorted(folder.glob("seg_*.ts")):
        seq = int(path.stem.split("_")[-1])
        if seq in known or path.stat().st_size == 0:
            continue
        if seq in listed:
            start, duration = listed[seq][0], listed[seq][1] - listed[seq][0]
        else:
            try:
                duration = ffmpeg.probe(path).duration_s
            except Exception:
                logger.warning("recorded file %s is unreadable; left out", path, exc_info=True)
                continue
            start = end_s
        s.add(
            MediaSegmentRow(
                broadcast_id=broadcast_id,
                seq=seq,
                path=to_stored(path, session_data_dir(s)),
                start_s=start,
                duration_s=duration,
                status="recorded",
                size=path.stat().st_size,
                created_ts=path.stat().st_mtime,
            )
        )
        end_s = max(end_s, start + duration)
    return end_s
