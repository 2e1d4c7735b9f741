"""Resume at start: pick up what a previous run of the monitor left in the database.

A monitor killed at any point and started again closes the interrupted broadcast (a gap is stored),
re-registers files the database missed, re-transcribes from the ASR watermark, analyses utterances not
yet analysed, re-reads video from its watermark (`video_resume_s`; a caption on screen at the crash is
read again from that point), and cuts pending evidence; alert ids are deterministic, so nothing is
raised twice. Runs once, on the thread that calls `Monitor.start`, before any stage worker starts.

Only this instance's broadcasts are resumed (store/leases.py): another monitor sharing the database
keeps its live broadcasts live. Before that, `claim` takes the legacy broadcasts (no owner: written
before ownership) that are unfinished or whose recordings lie in this data directory, and, with
`lease.adopt_expired`, the unfinished ones of instances whose lease expired (`adopt_expired`; the
housekeeping loop calls `adopt_and_resume` for those that die while this monitor runs, whose stage
workers are running by then: open alert groups are restored before any batch of theirs is queued).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.monitor_lease import close_unreachable, locate_recordings, repoint
from asr.types import TranscriptBatch
from ingest.types import MediaSegment, RecorderResume
from store import leases, repo
from store.db import Database
from store.live import (
    LiveStore,
    alert_from_row,
    next_caption_index,
    next_utterance_index,
    rescan_segments,
)
from store.models import AlertRow, Broadcast, MediaSegmentRow, UtteranceRow
from store.paths import resolve_stored

if TYPE_CHECKING:
    from app.monitor import Monitor

logger = logging.getLogger(__name__)


def recorder_resume(mon: Monitor, stream_id: str) -> RecorderResume | None:
    """Where the last run stopped recording this stream (its broadcasts are closed by `resume`), so the
    restart rejoins HLS after the last segment recorded, while the playlist still offers the rest."""
    return stored_resume_point(mon.db, stream_id)


def stored_resume_point(db: Database, stream_id: str) -> RecorderResume | None:
    """`recorder_resume` from the store alone (also the bus ingest worker's, app/bus_ingest.py, after it
    closed the broadcast a dead worker left live)."""
    with db.session() as s:
        b = s.scalar(
            select(Broadcast)
            .where(Broadcast.stream_id == stream_id, Broadcast.kind == "live")
            .order_by(Broadcast.started_ts.desc())
            .limit(1)
        )
        if b is None:
            return None
        src0, seq = b.source_start_s, b.hls_last_seq
        return RecorderResume(
            int(seq) if seq is not None else None,
            float(src0) + float(b.duration_s or 0.0) if src0 is not None else None,
            b.ended_ts,
        )


def resume(mon: Monitor) -> None:
    """Interrupted broadcasts, transcripts, analysis, video and evidence of the previous run of this
    instance (and of legacy ones, and with `lease.adopt_expired` of dead instances: `claim`)."""
    claim(mon)
    with mon.db.session() as s:
        todo = s.scalars(
            select(Broadcast)
            .where(
                Broadcast.kind == "live",
                Broadcast.status.in_(leases.UNFINISHED),
                leases.owned_broadcasts(mon.instance_id),
            )
            .order_by(Broadcast.started_ts)
        ).all()
    resume_broadcasts(mon, todo)
    _resume_evidence(mon)


def claim(mon: Monitor) -> list[Broadcast]:
    """At start: take the legacy broadcasts (owner NULL, from before ownership) this monitor should own,
    then, with `lease.adopt_expired`, the unfinished ones of dead instances. Returns the adopted ones whose
    recordings are reachable (ready to resume)."""
    me = mon.instance_id
    with mon.db.session() as s:
        legacy = s.execute(
            select(Broadcast.id, Broadcast.status, Broadcast.folder).where(
                Broadcast.kind == "live", Broadcast.owner.is_(None)
            )
        ).all()
    # unfinished: whoever resumes first; finished: the monitor whose data directory holds the recordings
    ids = [
        bid
        for bid, status, folder in legacy
        if status in leases.UNFINISHED or resolve_stored(folder or "", mon.db.data_dir).is_dir()
    ]
    if ids:
        got = mon.writer.call(partial(leases.claim_legacy, me=me, ids=ids))
        if got:
            logger.info("monitor instance %s claimed %d legacy broadcast(s) (no owner yet)", me, len(got))
    return adopt_expired(mon) if mon.cfg.lease.adopt_expired else []


def adopt_expired(mon: Monitor) -> list[Broadcast]:
    """Adopt the unfinished broadcasts of instances whose lease expired (app/monitor_lease.py): re-stamp
    them in one transaction, then point them at their reachable recordings, or close the unreachable
    ones. Returns the adopted broadcasts to resume."""
    me, now = mon.instance_id, mon.clock()
    with mon.db.session() as s:
        candidates = [(bid, str(owner)) for bid, owner in s.execute(leases.adoptable(me, now)).all()]
    if not candidates:
        return []
    got = set(mon.writer.call(partial(leases.adopt, me=me, candidates=candidates, now=now)))
    ready: list[Broadcast] = []
    for bid, old in candidates:
        if bid not in got:
            continue
        with mon.db.session() as s:
            b = s.get(Broadcast, bid)
            lease = leases.lease_of(s, old)
            last = s.scalar(
                select(MediaSegmentRow.created_ts)
                .where(MediaSegmentRow.broadcast_id == bid)
                .order_by(MediaSegmentRow.created_ts.desc())
                .limit(1)
            )
        if b is None:
            continue
        where = f"pid {lease.pid} on host {lease.host}" if lease else "no lease on record"
        folder = locate_recordings(b, mon.db.data_dir, lease.data_dir if lease else None)
        stamp = {"adopted_from": old, "adopted_ts": now}
        if folder is None:
            reason = (
                f"monitor {old} ({where}) stopped renewing its lease; its recordings "
                f"({b.folder}) are not reachable from {me}: closed without the rest of its "
                "transcription, analysis and evidence (nothing deleted)"
            )
            ended = last or (lease.heartbeat_ts if lease else None) or b.started_ts or now

            def close(
                s: Session,
                bid: str = bid,
                reason: str = reason,
                ended: float = ended,
                st: dict[str, Any] = stamp,
            ) -> None:
                close_unreachable(s, bid, reason, ended)
                _stamp(s, bid, st)

            mon.writer.call(close)
            logger.error("ADOPTED broadcast %s of dead monitor %s but %s", bid, old, reason)
            continue

        def point(s: Session, bid: str = bid, folder: Path = folder, st: dict[str, Any] = stamp) -> None:
            repoint(s, bid, folder, mon.db.data_dir)
            _stamp(s, bid, st)

        mon.writer.call(point)
        logger.warning(
            "ADOPTED broadcast %s of monitor %s (%s; lease expired): resuming it from %s",
            bid,
            old,
            where,
            folder,
        )
        with mon.db.session() as s:
            fresh = s.get(Broadcast, bid)
        if fresh is not None:
            ready.append(fresh)
    return ready


def adopt_and_resume(mon: Monitor) -> int:
    """From the housekeeping loop: adopt what dead instances left and resume it now. Returns how many."""
    ready = adopt_expired(mon)
    if ready:
        # its open alert groups first: the analysis thread meets these broadcasts only once batches come
        _resume_evidence(mon, [b.id for b in ready])
        resume_broadcasts(mon, ready)
    return len(ready)


def _stamp(s: Session, broadcast_id: str, fields: dict[str, Any]) -> None:
    b = s.get(Broadcast, broadcast_id)
    if b is not None:
        b.meta = {**(b.meta or {}), **fields}


def resume_broadcasts(mon: Monitor, todo: Sequence[Broadcast]) -> None:
    """Close the interrupted ones (a gap is stored), then resume ASR, video and analysis of each."""
    now = mon.clock()
    for b in todo:
        folder = resolve_stored(b.folder or "", mon.db.data_dir)
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

            end_s = mon.writer.call(close)
            logger.warning("broadcast %s was interrupted (monitor not stopped cleanly); resuming it", b.id)
        else:
            end_s = b.duration_s or 0.0
        mon.ingest.recorded_until(b.id, end_s, done=True)
        if not b.asr_complete:
            _resume_asr(mon, b, folder, b.asr_done_s or 0.0)
        if b.video_expected and not b.video_complete:
            _resume_video(mon, b, b.video_resume_s if b.video_resume_s is not None else b.video_done_s or 0.0)
    _resume_analysis(mon, todo)


def _resume_evidence(mon: Monitor, broadcast_ids: Sequence[str] | None = None) -> None:
    """Pending evidence of this instance's broadcasts (and of those no monitor owns: scans, bus-published
    broadcasts): alerts that may still grow go back to the analyzer, the rest to the cutter."""
    scope = (
        AlertRow.broadcast_id.in_(broadcast_ids)
        if broadcast_ids is not None
        else leases.owned_alerts(mon.instance_id, unowned=True)
    )
    with mon.db.session() as s:
        pending = s.scalars(select(AlertRow).where(AlertRow.evidence_status == "pending", scope)).all()
        bcs = s.scalars(select(Broadcast).where(Broadcast.id.in_({r.broadcast_id for r in pending}))).all()
        failed = {b.id for b in bcs if b.status == "failed"}  # adopted, recordings unreachable: they wait
        pending = [r for r in pending if r.broadcast_id not in failed]
        analyzed = {b.id: b.analyzed_s or 0.0 for b in bcs}
        complete = {b.id for b in bcs if b.analysis_complete}
        # the analyzer keeps an alert open until the text after it passed both the merge gap and the
        # context window (BroadcastAnalyzer._horizon): one that may still grow or gain context goes back
        a = mon.cfg.alerts
        horizon = max(a.merge_gap_s, a.context_after_s)
        for row in pending:
            if row.broadcast_id not in complete and row.end_s + horizon >= analyzed.get(row.broadcast_id, 0.0):
                mon.analysis.restore(alert_from_row(s, row))
            else:
                mon.evidence.put(row.id)


def _resume_asr(mon: Monitor, b: Broadcast, folder: Path, done_s: float) -> None:
    with mon.db.session() as s:
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
    mon.asr.open(
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


def _resume_video(mon: Monitor, b: Broadcast, done_s: float) -> None:
    """Queue the recorded files the video worker had not read, then the broadcast's end."""
    video = mon.video
    if video is None:
        logger.warning(
            "broadcast %s: its video was read up to %.1f s and video analysis is now off; the rest is "
            "left unread",
            b.id,
            done_s,
        )
        mon.writer.call(
            partial(LiveStore.store_captions, broadcast_id=b.id, captions=(), done_s=done_s, final=True)
        )
        return
    with mon.db.session() as s:
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
        path = str(resolve_stored(r.path, mon.db.data_dir))
        video.submit(
            b.id,
            stream,
            MediaSegment(b.id, r.seq, path, r.start_s, r.duration_s),
            first_caption_index=first_index,
        )
    video.end(b.id, stream)
    logger.info("broadcast %s: reading the rest of its video from %.1f s (%d files)", b.id, done_s, len(rows))


def video_files(mon: Monitor, broadcast_id: str, from_seq: int) -> list[MediaSegment]:
    """The recorded files of a broadcast from file `from_seq` on, in order (the video worker reads back
    what its full queue left out: app/live_video.py). Read through the database's writer: a recorded
    file's row is queued before the file goes to the video worker, so every file it left out is here."""

    def read(s: Session) -> list[MediaSegment]:
        rows = s.scalars(
            select(MediaSegmentRow)
            .where(
                MediaSegmentRow.broadcast_id == broadcast_id,
                MediaSegmentRow.seq >= from_seq,
                MediaSegmentRow.deleted.is_(False),
            )
            .order_by(MediaSegmentRow.seq)
        ).all()
        return [
            MediaSegment(
                broadcast_id, r.seq, str(resolve_stored(r.path, mon.db.data_dir)), r.start_s, r.duration_s
            )
            for r in rows
        ]

    return mon.writer.call(read)


def _resume_analysis(mon: Monitor, broadcasts: Sequence[Broadcast]) -> None:
    with mon.db.session() as s:
        for b in broadcasts:
            rows = s.scalars(
                select(UtteranceRow)
                .where(
                    UtteranceRow.broadcast_id == b.id,
                    UtteranceRow.source == "speech",
                    UtteranceRow.analyzed.is_(False),
                )
                .order_by(UtteranceRow.idx)
            ).all()
            if not rows and not (b.asr_complete and not b.analysis_complete):
                continue
            utts = tuple(repo.utterance_from_row(r) for r in rows)
            mon.analysis.put(
                TranscriptBatch(
                    b.id,
                    b.stream_id or "",
                    utts,
                    b.asr_done_s or 0.0,
                    bool(b.asr_complete),
                )
            )
