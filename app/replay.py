"""Replay stored transcripts through a changed rule set and diff the alerts, without ASR.

The baseline is the configured rule set run over the same stored utterances (not the stored alerts,
which may come from older rule versions or from price and visual checks that rule packs do not
change), so the diff shows exactly what the rule change does. Rows are matched by alert id (ids are
anchored to the broadcast, category, source and utterance), and reviewers' latest decisions on the
baseline alerts are shown beside them.

Read-only: nothing is written to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import AlertsConfig
from alerts.types import Alert
from app.analysis import analyze_broadcast
from store.models import Broadcast
from store.repo import load_utterances

__all__ = ["DiffRow", "ReplaySummary", "diff_alerts", "replay"]


@dataclass(frozen=True, slots=True)
class DiffRow:
    change: str  # added | removed | category | rule
    broadcast_id: str
    alert_id: str  # the baseline alert's id (removed/category/rule) or the new one (added)
    start_s: float
    end_s: float
    old_category: str | None
    new_category: str | None
    old_rule: str | None
    new_rule: str | None
    text: str
    decision: str | None = None  # the reviewers' latest decision on the baseline alert


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    broadcasts: int
    utterances: int
    baseline_version: str
    new_version: str
    baseline_alerts: int
    new_alerts: int
    rows: tuple[DiffRow, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """change → decision (or 'undecided') → count."""
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            per = out.setdefault(r.change, {})
            key = r.decision or "undecided"
            per[key] = per.get(key, 0) + 1
        return out


def _overlaps(a: Alert, b: Alert) -> bool:
    return a.source == b.source and a.start_s <= b.end_s and b.start_s <= a.end_s


def diff_alerts(old: Sequence[Alert], new: Sequence[Alert]) -> list[DiffRow]:
    """Pure: what `new` adds, removes, re-categorizes or re-attributes relative to `old`."""
    new_by_id = {a.alert_id: a for a in new}
    old_ids = {a.alert_id for a in old}
    rows: list[DiffRow] = []
    claimed: set[str] = set()
    for a in old:
        b = new_by_id.get(a.alert_id)
        if b is not None:
            claimed.add(b.alert_id)
            if a.rule_id not in {d.rule_id for d in b.detections}:  # the old lead rule no longer fires here
                rows.append(DiffRow("rule", a.broadcast_id, a.alert_id, a.start_s, a.end_s, a.category, b.category,
                                    a.rule_id, b.rule_id, a.text))
            continue
        # same moment, another category that the old set did not raise there: a change of category
        moved = next((b for b in new if b.alert_id not in old_ids and b.alert_id not in claimed
                      and b.broadcast_id == a.broadcast_id and _overlaps(a, b)
                      and not any(o.category == b.category and _overlaps(o, b) for o in old)), None)
        if moved is not None:
            claimed.add(moved.alert_id)
            rows.append(DiffRow("category", a.broadcast_id, a.alert_id, a.start_s, a.end_s, a.category,
                                moved.category, a.rule_id, moved.rule_id, a.text))
        else:
            rows.append(DiffRow("removed", a.broadcast_id, a.alert_id, a.start_s, a.end_s, a.category, None,
                                a.rule_id, None, a.text))
    for b in new:
        if b.alert_id not in old_ids and b.alert_id not in claimed:
            rows.append(DiffRow("added", b.broadcast_id, b.alert_id, b.start_s, b.end_s, None, b.category, None,
                                b.rule_id, b.text))
    rows.sort(key=lambda r: (r.broadcast_id, r.start_s, r.change))
    return rows


def replay(session: Session, *, baseline_rules: object, new_rules: object, alerts_cfg: AlertsConfig,
           since_ts: float | None = None, stream_id: str | None = None) -> ReplaySummary:
    from review.decisions import latest_decisions

    q = select(Broadcast).where(Broadcast.status.in_(("done", "live", "ended")))
    if stream_id:
        q = q.where(Broadcast.stream_id == stream_id)
    if since_ts is not None:
        q = q.where(Broadcast.created_ts >= since_ts)
    rows: list[DiffRow] = []
    n_b = n_u = n_old = n_new = 0
    for b in session.scalars(q.order_by(Broadcast.created_ts)):
        utts = load_utterances(session, b.id)
        speech = [u for u in utts if u.source == "speech"]
        screen = [u for u in utts if u.source == "screen"]
        common = {"price": None, "cfg": alerts_cfg, "broadcast_id": b.id, "stream_id": b.stream_id,
                  "started_ts": b.started_ts}
        old = analyze_broadcast(speech, screen, [], rules=baseline_rules, **common).alerts  # type: ignore[arg-type]
        new = analyze_broadcast(speech, screen, [], rules=new_rules, **common).alerts  # type: ignore[arg-type]
        rows.extend(diff_alerts(old, new))
        n_b += 1
        n_u += len(utts)
        n_old += len(old)
        n_new += len(new)
    decisions = latest_decisions(session, [r.alert_id for r in rows])
    rows = [DiffRow(**{**{f: getattr(r, f) for f in DiffRow.__slots__},  # type: ignore[arg-type]
                       "decision": decisions[r.alert_id].decision if r.alert_id in decisions else None})
            for r in rows]
    return ReplaySummary(n_b, n_u, baseline_rules.version, new_rules.version, n_old, n_new,  # type: ignore[attr-defined]
                         tuple(rows))
