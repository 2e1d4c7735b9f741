"""Read-side queries of the review app: the filtered queue with facet counts, statistics, the ledger.

An alert's time is when its moment was broadcast: its wall-clock start (`start_ts`), else its broadcast's
start (`--started-at`, a container's creation time, a live stream's clock) plus its offset in the media.
Only when neither is known is it when the alert was stored (the scan), and then it says so
(`time_basis`: "broadcast" or "scan"). The queue lists newest first. All functions take the caller's session, only read, and are safe to run
beside a monitor that writes (SQLite in WAL mode).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from review.decisions import latest_decisions, latest_status_subquery
from store.models import AlertRow, Broadcast, Decision

__all__ = [
    "CATEGORY_NAMES",
    "FACETS",
    "AlertFilter",
    "LedgerRow",
    "QueuePage",
    "Statistics",
    "alert_time",
    "ledger_rows",
    "queue",
    "statistics",
]

CATEGORY_NAMES = {
    "false_claim": "虚假宣传",
    "price_fraud": "价格欺诈",
    "fake_sales": "虚构交易/编造评价",
    "vulgar": "低俗",
    "defamation": "商业诋毁",
    "counterfeit": "假冒伪劣",
    "food_safety": "食品安全",
    "pyramid_selling": "传销",
    "consumer_rights": "侵害消费者权益",
    "improper_prize": "不当有奖销售",
    "prohibited_goods": "禁售商品",
    "orientation": "导向问题",
}
STATUS_NAMES = {
    "unreviewed": "未审核",
    "confirmed": "确认违规",
    "false_positive": "误报",
    "escalated": "上报",
}
FACETS = ("stream", "category", "severity", "source", "status")


def broadcast_time() -> ColumnElement[float]:
    """When the alert's moment was broadcast (epoch seconds), NULL where the broadcast's clock is unknown."""
    started = (
        select(Broadcast.started_ts).where(Broadcast.id == AlertRow.broadcast_id).scalar_subquery()
    )
    return func.coalesce(AlertRow.start_ts, started + AlertRow.start_s)


def alert_time() -> ColumnElement[float]:
    """The time the queue, ledger and statistics use: the broadcast moment, else the scan's time."""
    return func.coalesce(broadcast_time(), AlertRow.created_ts)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    stream: str | None = None
    category: str | None = None
    severity: str | None = None
    source: str | None = None
    status: str | None = None  # unreviewed | confirmed | false_positive | escalated
    since_ts: float | None = None
    until_ts: float | None = None
    text: str | None = None
    broadcast: str | None = None
    rule: str | None = None

    def without(self, facet: str) -> AlertFilter:
        return replace(self, **{facet: None})


def _status_col(latest: Any) -> ColumnElement[str]:
    return func.coalesce(Decision.decision, "unreviewed")


def _base(f: AlertFilter, columns: Sequence[Any]) -> Select[Any]:
    latest = latest_status_subquery()
    q = (
        select(*columns)
        .select_from(AlertRow)
        .outerjoin(latest, latest.c.alert_id == AlertRow.id)
        .outerjoin(Decision, Decision.id == latest.c.decision_id)
    )
    if f.stream:
        q = (
            q.where(AlertRow.stream_id == f.stream)
            if f.stream != "(none)"
            else q.where(AlertRow.stream_id.is_(None))
        )
    if f.category:
        q = q.where(AlertRow.category == f.category)
    if f.severity:
        q = q.where(AlertRow.severity == f.severity)
    if f.source:
        q = q.where(AlertRow.source == f.source)
    if f.broadcast:
        q = q.where(AlertRow.broadcast_id == f.broadcast)
    if f.rule:
        q = q.where(AlertRow.rule_id == f.rule)
    if f.status:
        q = (
            q.where(Decision.id.is_(None))
            if f.status == "unreviewed"
            else q.where(Decision.decision == f.status)
        )
    if f.since_ts is not None:
        q = q.where(alert_time() >= f.since_ts)
    if f.until_ts is not None:
        q = q.where(alert_time() < f.until_ts)
    if f.text:
        like = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(
            or_(
                AlertRow.text.like(like, escape="\\"),
                AlertRow.context.like(like, escape="\\"),
                AlertRow.rule_id.like(like, escape="\\"),
                AlertRow.id.like(like, escape="\\"),
                AlertRow.law.like(like, escape="\\"),
            )
        )
    return q


_FACET_COLUMNS: dict[str, Any] = {
    "stream": AlertRow.stream_id,
    "category": AlertRow.category,
    "severity": AlertRow.severity,
    "source": AlertRow.source,
}


@dataclass(slots=True)
class QueuePage:
    total: int
    items: list[dict[str, Any]]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def queue(session: Session, f: AlertFilter, *, limit: int = 100, offset: int = 0) -> QueuePage:
    """One page of alerts (newest first) and, for each facet, counts under all the *other* filters."""
    status = _status_col(None)
    rows = session.execute(
        _base(f, [AlertRow, status, Decision.reviewer, Decision.created_ts, broadcast_time()])
        .order_by(alert_time().desc(), AlertRow.start_s.desc(), AlertRow.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(_base(f, [func.count()])) or 0
    items = [_queue_item(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    counts: dict[str, dict[str, int]] = {}
    for facet in FACETS:
        col = status if facet == "status" else _FACET_COLUMNS[facet]
        fq = _base(f.without(facet), [col, func.count()]).group_by(col)
        counts[facet] = {("(none)" if k is None else str(k)): int(n) for k, n in session.execute(fq)}
    return QueuePage(int(total), items, counts)


def _queue_item(
    a: AlertRow, status: str, reviewer: str | None, decided_ts: float | None, moment_ts: float | None
) -> dict[str, Any]:
    p = a.payload or {}
    return {
        "alert_id": a.id,
        "time_ts": moment_ts if moment_ts is not None else a.created_ts,
        "time_basis": "broadcast" if moment_ts is not None else "scan",
        "start_ts": moment_ts,
        "scanned_ts": a.created_ts,
        "stream_id": a.stream_id,
        "broadcast_id": a.broadcast_id,
        "category": a.category,
        "category_name": CATEGORY_NAMES.get(a.category, a.category),
        "code": a.code,
        "rule": a.rule_id,
        "severity": a.severity,
        "source": a.source,
        "start_s": a.start_s,
        "end_s": a.end_s,
        "text": a.text,
        "matched": p.get("matched", ""),
        "status": status,
        "reviewer": reviewer,
        "decided_ts": decided_ts,
        "evidence_status": a.evidence_status,
    }


@dataclass(slots=True)
class Statistics:
    timezone: str
    since_ts: float | None
    until_ts: float | None
    totals: dict[str, int]
    per_day: list[dict[str, Any]]
    per_category: list[dict[str, Any]]
    per_stream: list[dict[str, Any]]
    per_rule: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "since_ts": self.since_ts,
            "until_ts": self.until_ts,
            "totals": self.totals,
            "per_day": self.per_day,
            "per_category": self.per_category,
            "per_stream": self.per_stream,
            "per_rule": self.per_rule,
        }


def _bucket_rows(counts: dict[str, Counter[str]], key_name: str) -> list[dict[str, Any]]:
    out = []
    for key, c in counts.items():
        decided = c["confirmed"] + c["escalated"] + c["false_positive"]
        out.append(
            {
                key_name: key,
                "alerts": c["alerts"],
                "confirmed": c["confirmed"],
                "escalated": c["escalated"],
                "false_positive": c["false_positive"],
                "unreviewed": c["unreviewed"],
                "violations": c["confirmed"] + c["escalated"],
                "precision": (c["confirmed"] + c["escalated"]) / decided if decided else None,
            }
        )
    return out


def statistics(session: Session, f: AlertFilter, timezone: str) -> Statistics:
    """Alerts and confirmed violations (confirmed or escalated) per day, category, stream and rule."""
    tz = ZoneInfo(timezone)
    rows = session.execute(
        _base(
            f,
            [
                AlertRow.id,
                alert_time(),
                AlertRow.category,
                AlertRow.stream_id,
                AlertRow.rule_id,
                _status_col(None),
            ],
        )
    ).all()
    by: dict[str, dict[str, Counter[str]]] = {
        k: defaultdict(Counter) for k in ("day", "category", "stream", "rule")
    }
    totals: Counter[str] = Counter()
    for _id, ts, category, stream, rule, status in rows:
        day = datetime.fromtimestamp(float(ts), tz).strftime("%Y-%m-%d")
        for dim, key in (
            ("day", day),
            ("category", category),
            ("stream", stream or "(none)"),
            ("rule", rule),
        ):
            by[dim][key]["alerts"] += 1
            by[dim][key][status] += 1
        totals["alerts"] += 1
        totals[status] += 1
    for day in _days_to_show(set(by["day"]), f, tz):
        by["day"].setdefault(day, Counter())
    per_day = sorted(_bucket_rows(by["day"], "day"), key=lambda r: r["day"])
    per_category = sorted(
        _bucket_rows(by["category"], "category"), key=lambda r: (-r["alerts"], r["category"])
    )
    for r in per_category:
        r["category_name"] = CATEGORY_NAMES.get(r["category"], r["category"])
    per_stream = sorted(_bucket_rows(by["stream"], "stream"), key=lambda r: (-r["alerts"], r["stream"]))
    per_rule = sorted(_bucket_rows(by["rule"], "rule"), key=lambda r: (-r["alerts"], r["rule"]))
    tot = {k: int(totals[k]) for k in ("alerts", "unreviewed", "confirmed", "false_positive", "escalated")}
    tot["violations"] = tot["confirmed"] + tot["escalated"]
    return Statistics(timezone, f.since_ts, f.until_ts, tot, per_day, per_category, per_stream, per_rule)


def _days_to_show(present: set[str], f: AlertFilter, tz: ZoneInfo, max_days: int = 400) -> list[str]:
    """Every day of the period (or between the first and last alert), so quiet days show as zero."""
    first = datetime.fromtimestamp(f.since_ts, tz).date() if f.since_ts is not None else None
    last = datetime.fromtimestamp(f.until_ts - 1e-3, tz).date() if f.until_ts is not None else None
    if present:
        days = sorted(present)
        first = first or date.fromisoformat(days[0])
        last = last or max(
            date.fromisoformat(days[-1]),
            datetime.now(tz).date() if f.since_ts is not None else date.fromisoformat(days[-1]),
        )
    if first is None or last is None or last < first or (last - first).days > max_days:
        return []
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One line of the ledger (台账): an alert, its current status and the evidence that backs it."""

    seq: int
    alert_id: str
    time_local: str  # when the moment was broadcast; the scan's time only where that is unknown
    stream_id: str
    broadcast_id: str
    moment: str
    category: str
    category_name: str
    code: str
    rule: str
    severity: str
    source: str
    text: str
    law: str
    status: str
    status_name: str
    reviewer: str
    decided_local: str
    note: str
    manifest_sha256: str
    time_basis: str = "broadcast"  # "broadcast" | "scan" (the broadcast's clock is unknown)

    HEADERS = (
        ("seq", "序号 No."),
        ("alert_id", "告警编号 Alert ID"),
        ("time_local", "时间 Time"),
        ("time_basis", "时间依据 Time basis"),
        ("stream_id", "直播间 Stream"),
        ("broadcast_id", "场次 Broadcast"),
        ("moment", "时间点 Moment"),
        ("category", "类别 Category"),
        ("category_name", "类别名称 Category name"),
        ("code", "代码 Code"),
        ("rule", "规则 Rule"),
        ("severity", "严重程度 Severity"),
        ("source", "信号 Source"),
        ("text", "内容 Text"),
        ("law", "法律依据 Law"),
        ("status", "状态 Status"),
        ("status_name", "状态名称 Status name"),
        ("reviewer", "审核人 Reviewer"),
        ("decided_local", "审核时间 Decided"),
        ("note", "备注 Note"),
        ("manifest_sha256", "证据清单 SHA-256 Evidence manifest"),
    )

    def values(self) -> list[Any]:
        return [getattr(self, k) for k, _ in self.HEADERS]


def _fmt_local(ts: float | None, tz: ZoneInfo) -> str:
    return "" if ts is None else datetime.fromtimestamp(float(ts), tz).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_moment(start_s: float, end_s: float) -> str:
    def one(s: float) -> str:
        return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:04.1f}"

    return f"{one(start_s)}-{one(end_s)}"


def ledger_rows(session: Session, f: AlertFilter, timezone: str) -> list[LedgerRow]:
    """The ledger for a filter (usually a period), oldest first, with each alert's latest decision and notes."""
    tz = ZoneInfo(timezone)
    found = session.execute(
        _base(f, [AlertRow, broadcast_time()]).order_by(alert_time(), AlertRow.start_s, AlertRow.id)
    ).all()
    alerts = [r[0] for r in found]
    moments = {r[0].id: r[1] for r in found}
    ids = [a.id for a in alerts]
    latest = latest_decisions(session, ids)
    notes: dict[str, list[str]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        q = select(Decision).where(Decision.alert_id.in_(ids[i : i + 500]), Decision.note != "")
        for row in session.scalars(q.order_by(Decision.id)):
            notes[row.alert_id].append(f"{row.reviewer}: {row.note}")
    out = []
    for n, a in enumerate(alerts, 1):
        d = latest.get(a.id)
        status = d.decision if d else "unreviewed"
        ev = (a.payload or {}).get("evidence") or {}
        out.append(
            LedgerRow(
                seq=n,
                alert_id=a.id,
                time_local=_fmt_local(moments[a.id] if moments[a.id] is not None else a.created_ts, tz),
                time_basis="broadcast" if moments[a.id] is not None else "scan",
                stream_id=a.stream_id or "",
                broadcast_id=a.broadcast_id,
                moment=_fmt_moment(a.start_s, a.end_s),
                category=a.category,
                category_name=CATEGORY_NAMES.get(a.category, a.category),
                code=a.code,
                rule=a.rule_id,
                severity=a.severity,
                source=a.source,
                text=a.text,
                law=a.law,
                status=status,
                status_name=STATUS_NAMES.get(status, status),
                reviewer=d.reviewer if d else "",
                decided_local=_fmt_local(d.created_ts if d else None, tz),
                note=" | ".join(notes.get(a.id, [])),
                manifest_sha256=str(ev.get("manifest_sha256", "")),
            )
        )
    return out
