"""The monitor's lease on its own work, and the adoption of a dead monitor's broadcasts.

Several monitors may share one database; each is an instance (`MonitorConfig.instance_id`, default
`default_instance_id`) holding a lease (store/leases.py). `LeaseKeeper.take` runs at start before
anything is resumed (refusing to start while another live process holds the same id), `run` renews it
every `lease.heartbeat_s` on its own thread, `release` expires it at a clean stop.

The heartbeat has its own thread and session rather than the housekeeping loop and the writer queue:
retention deleting thousands of files, or the writer holding its queue while the disk is full, must not
delay it past the ttl, or a live monitor would be taken for dead and its broadcasts adopted.

Adoption (`lease.adopt_expired`): at start (`resume`) and every heartbeat from the housekeeping loop,
the unfinished broadcasts of instances whose lease expired are re-stamped to this instance in one
transaction (store.leases.adopt: two survivors cannot both adopt one), logged, and resumed like this
monitor's own after a crash (app/monitor_resume.py): closed with a gap, the rest transcribed, analysed
and cut into evidence. Their recordings are looked for in this data directory, then in the dead
owner's (its lease names it: the same box, or a shared mount); found there, the broadcast's folder and
file rows are rewritten to those absolute paths. Found nowhere (the recordings live on the dead box),
the broadcast is closed as `failed` with a gap and the reason; its files and rows are never deleted,
and its pending alerts stay pending, saying why.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from store import leases
from store.db import Database
from store.models import AlertRow, Broadcast, BroadcastGap, MediaSegmentRow
from store.paths import resolve_stored

__all__ = ["LeaseKeeper", "default_instance_id", "locate_recordings"]

logger = logging.getLogger(__name__)


def default_instance_id(data_dir: Path) -> str:
    """<hostname>-<8 hex of the absolute data directory>: stable across restarts of one monitor, distinct
    for two monitors on one box with their own data directories."""
    digest = hashlib.sha256(str(Path(data_dir).absolute()).encode("utf-8")).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "_.-" else "-" for c in leases.this_host())[:100] or "host"
    return f"{host}-{digest}"


class LeaseKeeper:
    """One monitor instance's lease (see the module docstring). `lost` is set when the heartbeat found the
    lease taken over by another process."""

    def __init__(
        self,
        db: Database,
        owner: str,
        data_dir: Path,
        *,
        ttl_s: float,
        heartbeat_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.owner = owner
        self.data_dir = Path(data_dir).absolute()
        self.ttl_s, self.heartbeat_s = ttl_s, heartbeat_s
        self.clock = clock
        self.held = False
        self.refused = False  # another live process holds it: this monitor never started
        self.lost = False
        self.renewed_ts: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def take(self) -> None:
        """Raises store.leases.LeaseHeldError naming the process that holds it."""
        try:
            with self.db.session() as s, s.begin():
                info = leases.take_lease(s, self.owner, str(self.data_dir), self.clock(), self.ttl_s)
        except leases.LeaseHeldError:
            self.refused = True
            raise
        self.held, self.renewed_ts = True, info.heartbeat_ts
        logger.info("monitor instance %s: lease taken (ttl %.0f s)", self.owner, self.ttl_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.renew()
            except Exception as e:  # a locked or full database: said once per episode, retried each beat
                if not failing:
                    logger.exception("renewing the lease of monitor instance %s failed", self.owner)
                else:
                    logger.debug("renewing the lease failed again: %s", e)
                failing = True
                continue
            if failing:
                logger.warning("monitor instance %s: lease renewed again", self.owner)
            failing = False

    def renew(self) -> None:
        now = self.clock()
        with self.db.session() as s, s.begin():
            ok = leases.renew_lease(s, self.owner, now, self.ttl_s)
        if ok:
            self.renewed_ts = now
            if self.lost:
                logger.warning("monitor instance %s: lease held again", self.owner)
            self.lost = False
        elif not self.lost:
            self.lost = True
            logger.error(
                "monitor instance %s: its lease was taken over by another process (same instance_id "
                "started elsewhere?); this monitor keeps running but no longer renews it",
                self.owner,
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if not self.held:
            return
        try:
            with self.db.session() as s, s.begin():
                leases.release_lease(s, self.owner, self.clock())
        except SQLAlchemyError as e:  # a full disk or a lost database: the stop still finishes
            logger.warning(
                "monitor instance %s: lease not released (%s); it expires %.0f s after its last renewal",
                self.owner,
                str(e).splitlines()[0],
                self.ttl_s,
            )
            return
        self.held = False
        logger.info("monitor instance %s: lease released", self.owner)

    def status(self) -> dict[str, object]:
        return {
            "instance_id": self.owner,
            "held": self.held and not self.lost,
            "renewed_ts": self.renewed_ts,
            "ttl_s": self.ttl_s,
        }


def locate_recordings(b: Broadcast, data_dir: Path | None, owner_dir: str | None) -> Path | None:
    """Where a broadcast's recordings are reachable from here: its stored folder resolved against this
    data directory, else against its previous owner's (its lease's `data_dir`). None when neither exists."""
    stored = b.folder or ""
    if not stored:
        return None
    here = resolve_stored(stored, data_dir)
    if here.is_dir():
        return here
    if owner_dir:
        there = resolve_stored(stored, Path(owner_dir))
        if there.is_dir():
            return there
    return None


def repoint(s: Session, broadcast_id: str, folder: Path, data_dir: Path | None) -> None:
    """Rewrite an adopted broadcast's folder and file rows to where its recordings are reachable from here
    (absolute paths outside this data directory), so that ASR, evidence and retention find them."""
    b = s.get(Broadcast, broadcast_id)
    if b is None:
        return
    old = b.folder or ""
    if resolve_stored(old, data_dir) == folder:
        return
    b.folder = str(folder)
    b.meta = {**(b.meta or {}), "folder_before_adoption": old}
    for row in s.scalars(select(MediaSegmentRow).where(MediaSegmentRow.broadcast_id == broadcast_id)):
        row.path = str(folder / Path(row.path).name)


def close_unreachable(s: Session, broadcast_id: str, reason: str, ended_ts: float) -> None:
    """An adopted broadcast whose recordings are not reachable from here: closed as failed, with a gap and
    the reason; nothing deleted; its pending alerts stay pending and say why."""
    b = s.get(Broadcast, broadcast_id)
    if b is None:
        return
    if b.ended_ts is None:
        b.ended_ts = ended_ts
    b.status, b.error = "failed", reason
    b.end_reason = reason
    if b.stream_id:
        open_gap = s.scalar(
            select(BroadcastGap.id).where(
                BroadcastGap.stream_id == b.stream_id, BroadcastGap.end_ts.is_(None)
            )
        )
        if open_gap is None:
            s.add(BroadcastGap(stream_id=b.stream_id, start_ts=b.ended_ts, end_ts=None, reason=reason))
    for row in s.scalars(
        select(AlertRow).where(AlertRow.broadcast_id == broadcast_id, AlertRow.evidence_status == "pending")
    ):
        row.payload = {**(row.payload or {}), "evidence_error": reason}
