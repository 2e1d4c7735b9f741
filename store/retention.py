"""Retention of live recordings: delete old recorded files by age and by disk quota.

The decision is a pure function (`plan_retention`) over facts about the recorded files; `apply_retention`
gathers the facts from the database, deletes the chosen files and marks their rows `deleted` (rows are
kept, so a gap in the recordings stays explainable). Never deleted:

- pinned files (an alert's evidence was or will be cut from them; the manifest names them),
- files still in the pipeline (status other than `analyzed`): they are the monitor's buffer,
- files inside the pre/post-roll of an alert whose evidence is still pending,
- evidence folders, which retention never touches at all.

Several monitors sharing one database each apply retention (and the disk quota) to their own
broadcasts' files only (`owner`, store/leases.py).

Concurrency contract: the monitor calls `apply_retention` from its housekeeping loop; file deletion
happens there, row updates go through the `write` callable (the monitor's one database writer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.db import Database
from store.models import AlertRow, Broadcast, MediaSegmentRow
from store.paths import resolve_stored, session_data_dir

__all__ = [
    "Deletion",
    "Protected",
    "RetentionConfig",
    "RetentionPolicy",
    "SegmentFacts",
    "apply_retention",
    "plan_retention",
]

logger = logging.getLogger(__name__)

GB = 1024**3


class RetentionConfig(BaseModel):
    """How long a stream's recordings are kept (evidence is never deleted by retention)."""

    model_config = ConfigDict(extra="forbid")

    max_age_h: float | None = Field(
        72.0, gt=0, description="Delete unpinned recordings older than this many hours (null = keep by age)."
    )
    max_gb: float | None = Field(
        None,
        gt=0,
        description="Keep this stream's unpinned recordings under this many GiB, oldest deleted first.",
    )

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            None if self.max_age_h is None else self.max_age_h * 3600.0,
            None if self.max_gb is None else int(self.max_gb * GB),
        )


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    max_age_s: float | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    id: int
    stream_id: str
    broadcast_id: str
    start_s: float
    end_s: float
    created_ts: float
    size: int
    status: str
    pinned: bool


@dataclass(frozen=True, slots=True)
class Protected:
    """A stretch of a broadcast an alert still needs (its evidence is not cut yet)."""

    broadcast_id: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Deletion:
    segment_id: int
    reason: str  # "age" | "stream quota" | "disk quota"


def _deletable(seg: SegmentFacts, protected: Sequence[Protected]) -> bool:
    if seg.pinned or seg.status != "analyzed":
        return False
    return not any(
        p.broadcast_id == seg.broadcast_id and seg.start_s < p.end_s and seg.end_s > p.start_s
        for p in protected
    )


def plan_retention(
    segments: Sequence[SegmentFacts],
    policies: Mapping[str, RetentionPolicy],
    now_ts: float,
    protected: Sequence[Protected] = (),
    total_max_bytes: int | None = None,
) -> list[Deletion]:
    """Which recorded files to delete, and why. Pure: same facts, same answer.

    Age first (per stream), then each stream's quota, then the quota over all streams; quotas delete
    the oldest deletable files first and count every kept file (pinned ones too) against the limit.
    """
    chosen: dict[int, str] = {}
    deletable = [s for s in segments if _deletable(s, protected)]
    for seg in deletable:
        pol = policies.get(seg.stream_id)
        if pol and pol.max_age_s is not None and seg.created_ts < now_ts - pol.max_age_s:
            chosen[seg.id] = "age"

    def enforce(pool: Sequence[SegmentFacts], limit: int, reason: str) -> None:
        used = sum(s.size for s in pool if s.id not in chosen)
        ids = {s.id for s in pool}
        for seg in sorted((s for s in deletable if s.id in ids), key=lambda s: (s.created_ts, s.id)):
            if used <= limit:
                break
            if seg.id not in chosen:
                chosen[seg.id] = reason
                used -= seg.size

    by_stream: dict[str, list[SegmentFacts]] = {}
    for seg in segments:
        by_stream.setdefault(seg.stream_id, []).append(seg)
    for stream_id, pool in by_stream.items():
        pol = policies.get(stream_id)
        if pol and pol.max_bytes is not None:
            enforce(pool, pol.max_bytes, "stream quota")
    if total_max_bytes is not None:
        enforce(list(segments), total_max_bytes, "disk quota")
    return [Deletion(i, r) for i, r in sorted(chosen.items())]


def gather_facts(
    session: Session, pre_roll_s: float, post_roll_s: float, owner: str | None = None
) -> tuple[list[SegmentFacts], list[Protected]]:
    """The facts of the recorded files not deleted yet: all live broadcasts', or with `owner` only those of
    that monitor instance's broadcasts (store/leases.py: another monitor's files are not counted against
    this one's quotas, and never deleted by it)."""
    cond = [MediaSegmentRow.deleted.is_(False), Broadcast.kind == "live"]
    if owner is not None:
        cond.append(Broadcast.owner == owner)
    rows = session.execute(
        select(MediaSegmentRow, Broadcast.stream_id)
        .join(Broadcast, Broadcast.id == MediaSegmentRow.broadcast_id)
        .where(*cond)
    ).all()
    facts = [
        SegmentFacts(
            r.id,
            stream_id or "",
            r.broadcast_id,
            r.start_s,
            r.start_s + r.duration_s,
            r.created_ts,
            r.size,
            r.status,
            r.pinned,
        )
        for r, stream_id in rows
    ]
    pending = session.execute(
        select(AlertRow.broadcast_id, AlertRow.start_s, AlertRow.end_s).where(
            AlertRow.evidence_status == "pending"
        )
    ).all()
    protected = [Protected(b, s - pre_roll_s, e + post_roll_s) for b, s, e in pending]
    return facts, protected


def apply_retention(
    db: Database,
    policies: Mapping[str, RetentionPolicy],
    now_ts: float,
    *,
    pre_roll_s: float,
    post_roll_s: float,
    total_max_bytes: int | None = None,
    write: Callable[[Callable[[Session], None]], None] | None = None,
    owner: str | None = None,
) -> list[Deletion]:
    """Plan, delete the files, mark the rows. Returns what was deleted. With `owner`, only that monitor
    instance's recordings are counted and deleted (`gather_facts`)."""
    with db.session() as s:
        facts, protected = gather_facts(s, pre_roll_s, post_roll_s, owner)
        plan = plan_retention(facts, policies, now_ts, protected, total_max_bytes)
        data_dir = session_data_dir(s)
        paths = {
            r.id: resolve_stored(r.path, data_dir)  # stored relative to the data directory
            for r in s.scalars(
                select(MediaSegmentRow).where(MediaSegmentRow.id.in_([d.segment_id for d in plan]))
            )
        }
    for d in plan:
        paths[d.segment_id].unlink(missing_ok=True)
    if plan:
        ids = [d.segment_id for d in plan]

        def mark(session: Session) -> None:
            session.execute(update(MediaSegmentRow).where(MediaSegmentRow.id.in_(ids)).values(deleted=True))

        if write is not None:
            write(mark)
        else:
            with db.session() as s, s.begin():
                mark(s)
        reasons: dict[str, int] = {}
        for d in plan:
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
        logger.info(
            "retention deleted %d recorded files (%s)",
            len(plan),
            ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())),
        )
    return plan
