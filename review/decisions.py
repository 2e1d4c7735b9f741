"""Reviewer decisions: an append-only audit trail, the current status of alerts, per-rule precision.

`Decision` rows are only ever inserted. An alert's status is its latest status-bearing row
(`confirmed`, `false_positive`, `escalated`); `note` rows add a remark without changing the status. A
changed mind is a new row, so the history of who decided what, when and why is never lost. Importing
this module also makes the ORM refuse to update or delete a `Decision` (`AuditTrailError`).

Undo (`undo_decision`): within `UNDO_WINDOW_S` of a decision, its reviewer may take it back while it is
still the alert's latest status-bearing row. The undo is one more row, `undoes_id` pointing at the
decision taken back, whose `decision` is the status the alert had before it (`unreviewed` when it had
none), so the status goes back and the trail keeps both the decision and its undo.

Public for other stages: `latest_decisions` (what `livewatch replay` shows beside its diff) and
`rule_precision` (what tuners see). Functions take the caller's session and never commit, except
`add_decision`, which is one reviewer action and commits it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from store.models import AlertRow, Decision

__all__ = [
    "DECISIONS",
    "NOTE",
    "STATUSES",
    "UNDO_WINDOW_S",
    "AuditTrailError",
    "RulePrecision",
    "UndoRefused",
    "add_decision",
    "decision_dict",
    "history",
    "latest_decisions",
    "latest_status_subquery",
    "rule_precision",
    "undo_decision",
]

DECISIONS = ("confirmed", "false_positive", "escalated")
NOTE = "note"
STATUSES = ("unreviewed", *DECISIONS)  # what the queue filters on
UNDO_WINDOW_S = 30.0  # the page offers Undo for 5 s; the server allows slack for a slow click or network


class AuditTrailError(Exception):
    """An attempt to change or remove a recorded decision."""


@event.listens_for(Decision, "before_update")
def _no_update(_mapper: Any, _conn: Any, target: Decision) -> None:
    raise AuditTrailError(f"decision {target.id} is part of the audit trail; append a new decision instead")


@event.listens_for(Decision, "before_delete")
def _no_delete(_mapper: Any, _conn: Any, target: Decision) -> None:
    raise AuditTrailError(f"decision {target.id} is part of the audit trail and cannot be deleted")


def add_decision(
    session: Session,
    alert_id: str,
    decision: str,
    *,
    reviewer: str,
    note: str = "",
    clock: Callable[[], float] = time.time,
) -> Decision:
    """Append one decision and commit. Raises KeyError for an unknown alert, ValueError for a bad kind."""
    if decision not in (*DECISIONS, NOTE):
        raise ValueError(f"decision must be one of {', '.join((*DECISIONS, NOTE))}, not {decision!r}")
    note = note.strip()
    if decision == NOTE and not note:
        raise ValueError("a note needs text")
    if not reviewer:
        raise ValueError("a decision needs a reviewer")
    alert = session.get(AlertRow, alert_id)
    if alert is None:
        raise KeyError(alert_id)
    row = Decision(alert_id=alert_id, decision=decision, note=note, reviewer=reviewer, created_ts=clock())
    session.add(row)
    session.commit()
    session.expire(alert, ["status", "decision_id"])  # the database's trigger changed them (store.scale)
    return row


class UndoRefused(Exception):
    """A decision that cannot be taken back (too late, not the reviewer's, not the latest, a note)."""


def undo_decision(
    session: Session,
    alert_id: str,
    decision_id: int,
    *,
    reviewer: str,
    window_s: float = UNDO_WINDOW_S,
    clock: Callable[[], float] = time.time,
) -> Decision:
    """Take back decision `decision_id` of `alert_id`: append the row that restores the status before it,
    and commit. Raises KeyError (no such alert or decision) or `UndoRefused` (why, in words)."""
    target = session.get(Decision, decision_id)
    if target is None or target.alert_id != alert_id:
        raise KeyError(decision_id)
    if target.decision == NOTE:
        raise UndoRefused("a note changes no status; add another note instead")
    if target.undoes_id is not None:
        raise UndoRefused("this is itself an undo; make a new decision instead")
    if target.reviewer != reviewer:
        raise UndoRefused("only the reviewer who made a decision can undo it")
    now = clock()
    if now - target.created_ts > window_s:
        raise UndoRefused(f"too late to undo (more than {window_s:.0f} s ago); make a new decision instead")
    q = select(Decision).where(Decision.alert_id == alert_id, Decision.decision != NOTE)
    later = session.scalars(q.where(Decision.id > target.id).limit(1)).first()
    if later is not None:
        raise UndoRefused("a later decision has been made on this alert since")
    before = session.scalars(q.where(Decision.id < target.id).order_by(Decision.id.desc()).limit(1)).first()
    restored = before.decision if before is not None else "unreviewed"
    alert = session.get(AlertRow, alert_id)
    row = Decision(
        alert_id=alert_id,
        decision=restored,
        note=f"undo of decision {target.id} ({target.decision})",
        reviewer=reviewer,
        created_ts=max(now, target.created_ts),
        undoes_id=target.id,
    )
    session.add(row)
    session.commit()
    if alert is not None:
        session.expire(alert, ["status", "decision_id"])  # the database's trigger changed them (store.scale)
    return row


def history(session: Session, alert_id: str) -> list[Decision]:
    """Every decision and note on an alert, oldest first."""
    q = select(Decision).where(Decision.alert_id == alert_id).order_by(Decision.created_ts, Decision.id)
    return list(session.scalars(q))


def decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "alert_id": d.alert_id,
        "decision": d.decision,
        "note": d.note,
        "reviewer": d.reviewer,
        "created_ts": d.created_ts,
        "undoes_id": d.undoes_id,
    }


def latest_status_subquery() -> Any:
    """(alert_id, decision_id) of the latest status-bearing decision per alert, as a subquery."""
    return (
        select(Decision.alert_id.label("alert_id"), func.max(Decision.id).label("decision_id"))
        .where(Decision.decision != NOTE)
        .group_by(Decision.alert_id)
        .subquery()
    )


def latest_decisions(session: Session, alert_ids: Iterable[str] | None = None) -> dict[str, Decision]:
    """alert_id → its latest status-bearing decision (alerts never decided are absent).

    `alert_ids=None` means every alert. Ids are the insertion order, so "latest" is the last appended
    even if two rows share a timestamp.
    """
    # alerts.decision_id is the latest status-bearing decision, kept by the database (store.scale)
    q = select(Decision).join(AlertRow, AlertRow.decision_id == Decision.id)
    if alert_ids is None:
        return {d.alert_id: d for d in session.scalars(q)}
    ids = list(dict.fromkeys(alert_ids))
    out: dict[str, Decision] = {}
    for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[i : i + 500]
        out.update({d.alert_id: d for d in session.scalars(q.where(AlertRow.id.in_(chunk)))})
    return out


@dataclass(frozen=True, slots=True)
class RulePrecision:
    """Decisions on one rule's alerts. `precision` counts confirmed and escalated as true positives and
    is None until at least one alert of the rule has been decided."""

    rule_id: str
    alerts: int
    confirmed: int
    false_positive: int
    escalated: int
    unreviewed: int

    @property
    def decided(self) -> int:
        return self.confirmed + self.false_positive + self.escalated

    @property
    def precision(self) -> float | None:
        return (self.confirmed + self.escalated) / self.decided if self.decided else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "alerts": self.alerts,
            "confirmed": self.confirmed,
            "false_positive": self.false_positive,
            "escalated": self.escalated,
            "unreviewed": self.unreviewed,
            "decided": self.decided,
            "precision": self.precision,
        }


def rule_precision(
    session: Session, *, since_ts: float | None = None, until_ts: float | None = None
) -> dict[str, RulePrecision]:
    """rule_id → counts of its alerts by current status, optionally limited to alerts in [since, until)."""
    # alerts.status and alerts.time_ts (the queue's time) are kept by the database (store.scale)
    q = select(AlertRow.rule_id, AlertRow.status, func.count()).group_by(AlertRow.rule_id, AlertRow.status)
    if since_ts is not None:
        q = q.where(AlertRow.time_ts >= since_ts)
    if until_ts is not None:
        q = q.where(AlertRow.time_ts < until_ts)
    counts: dict[str, dict[str, int]] = {}
    for rule_id, decision, n in session.execute(q):
        counts.setdefault(rule_id, {})[decision or "unreviewed"] = int(n)
    return {
        rule: RulePrecision(
            rule,
            sum(c.values()),
            c.get("confirmed", 0),
            c.get("false_positive", 0),
            c.get("escalated", 0),
            c.get("unreviewed", 0),
        )
        for rule, c in sorted(counts.items())
    }
