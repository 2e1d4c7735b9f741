"""Which monitor owns what: leases with a heartbeat, and the queries that scope a monitor to its own work.

Several monitors may share one database (PostgreSQL), each with its own streams and data directory.
Each runs as an *instance* (an id: `MonitorConfig.instance_id`) holding a row of `monitor_leases`:
taken at start (`take_lease`, refused while another live process holds the same id), renewed by a
heartbeat (`renew_lease`: `expires_ts = now + ttl`), expired at a clean stop (`release_lease`).
Every live broadcast carries its owner's id (`broadcasts.owner`); its files, lines and alerts belong to
it and are scoped through it. A monitor's resume, pending-evidence sweep, retention and verification
pass read only `owned_broadcasts(owner)`; others' rows are never touched.

Ownership changes hands only by compare-and-set updates (`claim_legacy`, `adopt`), each broadcast's
`UPDATE ... WHERE owner = <seen owner>` in one transaction: two survivors adopting the same dead
monitor's broadcasts race on the row, and exactly one of them gets each (PostgreSQL re-checks the
condition after the other's commit; SQLite serialises writers).

`owner` NULL means legacy (written before revision 0009) or not a monitor's (a scan, a bus-published
broadcast): an unfinished one is claimed by the first monitor that resumes it; a finished one by the
monitor whose data directory holds its recordings.

Concurrency: plain functions over a session; the caller commits. The heartbeat runs on its own session,
not behind the monitor's writer queue (app/monitor_lease.py says why).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, exists, or_, select, update
from sqlalchemy.orm import Session

from store.models import AlertRow, Broadcast, MonitorLease

__all__ = [
    "LeaseHeldError",
    "LeaseInfo",
    "adopt",
    "adoptable",
    "claim_legacy",
    "expired_owner",
    "lease_of",
    "owned_alerts",
    "owned_broadcasts",
    "release_lease",
    "renew_lease",
    "take_lease",
]

UNFINISHED = ("live", "ended")


class LeaseHeldError(Exception):
    """Another live process holds this monitor instance's lease (the message names it)."""


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    owner: str
    host: str
    pid: int
    data_dir: str
    started_ts: float
    heartbeat_ts: float
    expires_ts: float


def _info(row: MonitorLease) -> LeaseInfo:
    return LeaseInfo(
        row.owner, row.host, row.pid, row.data_dir, row.started_ts, row.heartbeat_ts, row.expires_ts
    )


def this_host() -> str:
    return socket.gethostname()[:256]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # exists, someone else's
    return True


def lease_of(s: Session, owner: str) -> LeaseInfo | None:
    row = s.get(MonitorLease, owner)
    return None if row is None else _info(row)


def take_lease(s: Session, owner: str, data_dir: str, now: float, ttl_s: float) -> LeaseInfo:
    """Take (or take over) `owner`'s lease for this process. Raises LeaseHeldError while it is held by
    another live process: unexpired and on another host, or on this host by another pid still running.
    A lease left by a process of this host that is gone (kill -9, a crash) is taken over at once; one
    of this very process (an in-process monitor not stopped cleanly) too."""
    host, pid = this_host(), os.getpid()
    row = s.get(MonitorLease, owner, with_for_update=True)
    if row is not None and row.expires_ts > now and (row.host, row.pid) != (host, pid):
        if row.host != host or _pid_alive(row.pid):
            raise LeaseHeldError(
                f"monitor instance '{owner}' is already running: pid {row.pid} on host {row.host} "
                f"(data directory {row.data_dir}) holds its lease, renewed {now - row.heartbeat_ts:.0f} s "
                f"ago, until {row.expires_ts - now:.0f} s from now. Stop that monitor, or give this one "
                "another `instance_id` in its config"
            )
    if row is None:
        row = MonitorLease(owner=owner)
        s.add(row)
    row.host, row.pid, row.data_dir = host, pid, data_dir
    row.started_ts = row.heartbeat_ts = now
    row.expires_ts = now + ttl_s
    s.flush()
    return _info(row)


def renew_lease(s: Session, owner: str, now: float, ttl_s: float) -> bool:
    """The heartbeat. False if the lease is no longer this process's (taken over by another)."""
    res = s.execute(
        update(MonitorLease)
        .where(MonitorLease.owner == owner, MonitorLease.host == this_host(), MonitorLease.pid == os.getpid())
        .values(heartbeat_ts=now, expires_ts=now + ttl_s)
    )
    return bool(getattr(res, "rowcount", 0))


def release_lease(s: Session, owner: str, now: float) -> None:
    """At a clean stop: the lease expires now (the row stays, saying who ran it last and where)."""
    s.execute(
        update(MonitorLease)
        .where(MonitorLease.owner == owner, MonitorLease.host == this_host(), MonitorLease.pid == os.getpid())
        .values(heartbeat_ts=now, expires_ts=now)
    )


def owned_broadcasts(owner: str) -> ColumnElement[bool]:
    """The condition on `Broadcast` of what a monitor instance may touch: its own broadcasts."""
    return Broadcast.owner == owner


def owned_alerts(owner: str, *, unowned: bool = False) -> ColumnElement[bool]:
    """The condition on `AlertRow`: alerts of the instance's broadcasts (and, with `unowned`, of
    broadcasts no monitor owns: scans, bus-published ones)."""
    cond = Broadcast.owner == owner
    if unowned:
        cond = or_(cond, Broadcast.owner.is_(None))
    return AlertRow.broadcast_id.in_(select(Broadcast.id).where(cond))


def evidence_settled() -> ColumnElement[bool]:
    """The condition on `AlertRow`: its evidence is settled, so a webhook can carry it: cut or failed, or
    the alert is of a broadcast whose clips nobody will cut live (a scan's, which cuts before storing,
    or a failed broadcast's)."""
    return or_(
        AlertRow.evidence_status != "pending",
        AlertRow.broadcast_id.in_(
            select(Broadcast.id).where(or_(Broadcast.kind != "live", Broadcast.status == "failed"))
        ),
    )


def expired_owner(now: float) -> ColumnElement[bool]:
    """The condition on `Broadcast`: owned by an instance whose lease has expired (or has none)."""
    return ~exists().where(MonitorLease.owner == Broadcast.owner, MonitorLease.expires_ts > now)


def adoptable(me: str, now: float) -> Select[str, str | None]:
    """(broadcast id, owner) of unfinished live broadcasts of other instances whose lease expired."""
    return (
        select(Broadcast.id, Broadcast.owner)
        .where(
            Broadcast.kind == "live",
            Broadcast.status.in_(UNFINISHED),
            Broadcast.owner.is_not(None),
            Broadcast.owner != me,
            expired_owner(now),
        )
        .order_by(Broadcast.started_ts)
    )


def adopt(s: Session, me: str, candidates: Sequence[tuple[str, str]], now: float) -> list[str]:
    """Re-stamp each (broadcast, seen owner) to `me` if it still has that owner and that owner's lease
    is still expired. Returns the ids this call adopted (see the module docstring for the race)."""
    got = []
    for bid, old in candidates:
        res = s.execute(
            update(Broadcast)
            .where(
                Broadcast.id == bid,
                Broadcast.owner == old,
                Broadcast.status.in_(UNFINISHED),
                ~exists().where(MonitorLease.owner == old, MonitorLease.expires_ts > now),
            )
            .values(owner=me)
            .execution_options(synchronize_session=False)
        )
        if getattr(res, "rowcount", 0):
            got.append(bid)
    return got


def claim_legacy(s: Session, me: str, ids: Sequence[str]) -> list[str]:
    """Stamp unowned (legacy) broadcasts to `me` where still unowned. Returns those claimed."""
    got = []
    for bid in ids:
        res = s.execute(
            update(Broadcast)
            .where(Broadcast.id == bid, Broadcast.owner.is_(None))
            .values(owner=me)
            .execution_options(synchronize_session=False)
        )
        if getattr(res, "rowcount", 0):
            got.append(bid)
    return got
