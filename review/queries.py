"""Read-side queries of the review app: the filtered queue with facet counts, statistics, the ledger.

An alert's time is when its moment was broadcast: its wall-clock start (`start_ts`), else its broadcast's
start (`--started-at`, a container's creation time, a live stream's clock) plus its offset in the media.
Only when neither is known is it when the alert was stored (the scan), and then it says so
(`time_basis`: "broadcast" or "scan"). The queue lists newest first. All functions take the caller's session, only read, and are safe to run
beside a monitor that writes (SQLite in WAL mode).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, Select, cast, func, literal_column, or_, select, text, tuple_
from sqlalchemy.orm import Session

from store import scale
from store.models import (
    AlertDailyCount,
    AlertFacetCount,
    AlertHourlyCount,
    AlertMonthlyCount,
    AlertRow,
    Decision,
)

__all__ = [
    "CATEGORY_NAMES",
    "FACETS",
    "AlertFilter",
    "BadCursor",
    "LedgerRow",
    "QueuePage",
    "Statistics",
    "alert_time",
    "iter_ledger_rows",
    "iter_ledger_values",
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


def broadcast_time() -> Any:
    """When the alert's moment was broadcast (epoch seconds), NULL where the broadcast's clock is unknown
    (`alerts.moment_ts`, kept by the database: store.scale)."""
    return AlertRow.moment_ts


def alert_time() -> Any:
    """The time the queue, ledger and statistics use: the broadcast moment, else the scan's time."""
    return AlertRow.time_ts


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


class BadCursor(ValueError):
    """A queue cursor this code did not hand out."""


def encode_cursor(time_ts: float, start_s: float, alert_id: str) -> str:
    raw = json.dumps([time_ts, start_s, alert_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        t, s, i = json.loads(raw)
        if not isinstance(i, str):
            raise TypeError(i)
        return float(t), float(s), i
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as e:
        raise BadCursor(f"not a queue cursor: {cursor[:40]!r}") from e


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


_PG_SEARCH: dict[str, bool] = {}


def _text_match(session: Session, needle: str) -> Any:
    """Alerts whose text, context, rule, id or law contain `needle` (case-insensitive), through the
    search index where one serves: SQLite FTS5 trigram, PostgreSQL pg_trgm; both need 3+ characters."""
    dialect = _dialect(session)
    like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if len(needle) >= 3 and dialect == "sqlite":
        phrase = '"' + needle.replace('"', '""') + '"'
        return text(f"alerts.rowid IN (SELECT rowid FROM {scale.FTS_TABLE} WHERE {scale.FTS_TABLE} MATCH :fts)"
                    ).bindparams(fts=phrase)
    if dialect == "postgresql":
        url = str(session.get_bind().engine.url)
        if url not in _PG_SEARCH:
            _PG_SEARCH[url] = scale.pg_search_available(session.connection())
        if _PG_SEARCH[url]:
            return literal_column(f"({scale.search_expression_sql('alerts')})").ilike(like, escape="\\")
    return or_(*(c.ilike(like, escape="\\") for c in (AlertRow.text, AlertRow.context, AlertRow.rule_id,
                                                      AlertRow.id, AlertRow.law)))


def _where(session: Session | None, f: AlertFilter, q: Select[Any]) -> Select[Any]:
    if f.stream:
        q = q.where(AlertRow.stream_id == f.stream) if f.stream != "(none)" else q.where(AlertRow.stream_id.is_(None))
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
        q = q.where(AlertRow.status == f.status)
    if f.since_ts is not None:
        q = q.where(AlertRow.time_ts >= f.since_ts)
    if f.until_ts is not None:
        q = q.where(AlertRow.time_ts < f.until_ts)
    if f.text and session is not None:
        q = q.where(_text_match(session, f.text))
    return q


def _base(f: AlertFilter, columns: Sequence[Any], session: Session | None = None) -> Select[Any]:
    return _where(session, f, select(*columns).select_from(AlertRow))


_FACET_COLUMNS: dict[str, Any] = {
    "stream": AlertRow.stream_id,
    "category": AlertRow.category,
    "severity": AlertRow.severity,
    "source": AlertRow.source,
    "status": AlertRow.status,
}
_COUNT_COLUMNS: dict[str, Any] = {
    "stream": AlertFacetCount.stream_id,
    "category": AlertFacetCount.category,
    "severity": AlertFacetCount.severity,
    "source": AlertFacetCount.source,
    "status": AlertFacetCount.status,
    "rule": AlertFacetCount.rule_id,
}
QUEUE_ORDER = (AlertRow.time_ts.desc(), AlertRow.start_s.desc(), AlertRow.id.desc())
LEDGER_ORDER = (AlertRow.time_ts, AlertRow.start_s, AlertRow.id)


def _from_counts(f: AlertFilter) -> bool:
    """Whether the maintained counts (alert_facets) answer this filter: only facet and rule filters."""
    return f.since_ts is None and f.until_ts is None and not f.text and not f.broadcast


def _facet_where(f: AlertFilter, q: Select[Any]) -> Select[Any]:
    for facet in ("stream", "category", "severity", "source", "status", "rule"):
        value = getattr(f, facet)
        if value:
            if facet == "stream" and value == "(none)":
                value = scale.NO_STREAM
            q = q.where(_COUNT_COLUMNS[facet] == value)
    return q


def _counts(session: Session, f: AlertFilter) -> tuple[int, dict[str, dict[str, int]]]:
    """The total under `f` and, per facet, counts under all the *other* filters: from the maintained
    counts when they answer the filter (no time, text or broadcast filter), else from the rows' indexes."""
    counts: dict[str, dict[str, int]] = {}
    if _from_counts(f):
        total = session.scalar(_facet_where(f, select(func.coalesce(func.sum(AlertFacetCount.n), 0)))) or 0
        for facet in FACETS:
            col = _COUNT_COLUMNS[facet]
            q = _facet_where(f.without(facet), select(col, func.sum(AlertFacetCount.n)))
            rows = session.execute(q.group_by(col).having(func.sum(AlertFacetCount.n) > 0))
            counts[facet] = {("(none)" if k in (None, scale.NO_STREAM) else str(k)): int(n) for k, n in rows}
        return int(total), counts
    total = session.scalar(_base(f, [func.count()], session)) or 0
    for facet in FACETS:
        col = _FACET_COLUMNS[facet]
        fq = _base(f.without(facet), [col, func.count()], session).group_by(col)
        counts[facet] = {("(none)" if k is None else str(k)): int(n) for k, n in session.execute(fq)}
    return int(total), counts


@dataclass(slots=True)
class QueuePage:
    total: int | None
    items: list[dict[str, Any]]
    counts: dict[str, dict[str, int]] | None = field(default_factory=dict)
    next_cursor: str | None = None


def queue(
    session: Session,
    f: AlertFilter,
    *,
    limit: int = 100,
    offset: int = 0,
    cursor: str | None = None,
    with_counts: bool = True,
) -> QueuePage:
    """One page of alerts (newest first) and, for each facet, counts under all the *other* filters.

    Pages after the first are asked for by `cursor` (the previous page's `next_cursor`): a keyset
    seek in the index of the filter, as cheap at the millionth alert as at the first. `offset` is kept
    for old API clients and reads every row it skips. Raises BadCursor for a cursor not made here."""
    q = _base(f, [AlertRow, Decision.reviewer, Decision.created_ts], session).outerjoin(
        Decision, Decision.id == AlertRow.decision_id
    )
    if cursor:
        t, st, i = decode_cursor(cursor)
        q = q.where(tuple_(AlertRow.time_ts, AlertRow.start_s, AlertRow.id) < tuple_(t, st, i))
    q = q.order_by(*QUEUE_ORDER).limit(limit + 1)
    if offset:
        q = q.offset(offset)
    rows = session.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_queue_item(r[0], r[1], r[2]) for r in rows]
    last = rows[-1][0] if rows else None
    next_cursor = encode_cursor(float(last.time_ts or 0), last.start_s, last.id) if more and last else None
    if not with_counts:
        return QueuePage(None, items, None, next_cursor)
    total, counts = _counts(session, f)
    return QueuePage(total, items, counts, next_cursor)


def _queue_item(a: AlertRow, reviewer: str | None, decided_ts: float | None) -> dict[str, Any]:
    moment_ts = a.moment_ts
    status = a.status
    p = a.payload or {}
    return {
        "alert_id": a.id,
        "time_ts": a.time_ts if a.time_ts is not None else a.created_ts,
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
        "reviewer": reviewer if status != "unreviewed" else None,  # an undo leaves a row behind
        "decided_ts": decided_ts if status != "unreviewed" else None,
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


_DIMS = ("day", "category", "stream", "rule")
_Counts = dict[str, dict[str, Counter[str]]]


def _bucket_col(session: Session, seconds: int) -> ColumnElement[int]:
    if _dialect(session) == "postgresql":
        return cast(func.floor(AlertRow.time_ts / seconds), Integer)
    return cast(AlertRow.time_ts / seconds, Integer)  # SQLite truncates; times are after 1970


def _add_rows(
    session: Session, f: AlertFilter, tz: ZoneInfo, by: _Counts, totals: Counter[str],
    dims: Sequence[str], lo: float | None, hi: float | None,
) -> None:
    """Count the alerts of `f` in [lo, hi) into `dims` (and the totals when "day" is one), grouped by
    the database in 15-minute buckets (every time zone's days are made of them)."""
    bucket = _bucket_col(session, 900)
    cols = [bucket, AlertRow.category, AlertRow.stream_id, AlertRow.rule_id, AlertRow.status]
    # one range on time_ts: given two (the filter's and [lo, hi)), SQLite seeks the index by the first
    # and filters by the second, reading the whole period's index to count an edge of a few hours
    since = lo if f.since_ts is None else (f.since_ts if lo is None else max(lo, f.since_ts))
    until = hi if f.until_ts is None else (f.until_ts if hi is None else min(hi, f.until_ts))
    q = _base(replace(f, since_ts=since, until_ts=until), [*cols, func.count()], session)
    days: dict[int, str] = {}
    for b, category, stream, rule, status, n in session.execute(q.group_by(*cols)):
        keys = {"category": category, "stream": stream or "(none)", "rule": rule}
        if "day" in dims:
            day = days.get(b)
            if day is None:
                day = days[b] = datetime.fromtimestamp(int(b) * 900, tz).strftime("%Y-%m-%d")
            keys["day"] = day
            totals["alerts"] += n
            totals[status] += n
        for dim in dims:
            c = by[dim][keys[dim]]
            c["alerts"] += n
            c[status] += n


def _whole_hour_zone(tz: ZoneInfo, f: AlertFilter) -> bool:
    points = [t for t in (f.since_ts, f.until_ts) if t is not None] or [datetime.now(tz).timestamp()]
    points.append(sum(points) / len(points))
    for t in points:
        off = datetime.fromtimestamp(t, tz).utcoffset()
        if off is None or off.total_seconds() % 3600:
            return False
    return True


def _inner(lo: float | None, hi: float | None, size: int) -> tuple[float | None, float | None]:
    """The whole buckets of `size` seconds inside [lo, hi) (None: unbounded on that side)."""
    a = None if lo is None else math.ceil(lo / size) * size
    b = None if hi is None else math.floor(hi / size) * size
    if a is not None and b is not None and b < a:
        b = a
    return a, b


def _covers_all(session: Session, lo: float | None, hi: float | None) -> bool:
    """Whether [lo, hi) holds every alert (the first and last by the time index): then the all-time
    counts answer per category, stream and rule, without summing a daily row per stream and day."""
    # two statements: SQLite reads one end of an index for min() or max() alone, but scans for both
    first = session.scalar(select(func.min(AlertRow.time_ts)))
    last = session.scalar(select(func.max(AlertRow.time_ts)))
    if first is None or last is None:
        return False
    return (lo is None or lo <= first) and (hi is None or last < hi)


def _month_start(ts: float, *, up: bool) -> int:
    """The start of the UTC month holding `ts` (`up`: of the next month, unless `ts` is a month's start)."""
    d = datetime.fromtimestamp(ts, UTC)
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    if up and start.timestamp() < ts:
        start = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp())


def _inner_months(lo: float | None, hi: float | None) -> tuple[int | None, int | None]:
    """The whole UTC months inside [lo, hi) as [month start, month start) (None: unbounded)."""
    return (None if lo is None else _month_start(lo, up=True),
            None if hi is None else _month_start(hi, up=False))


def _add_keyed(session: Session, table: Any, by: _Counts, lo: float | None, hi: float | None) -> None:
    """Per category, stream and rule from a keyed count table (alert_daily or alert_monthly) over its
    buckets in [lo, hi)."""
    bucket = table.day_ts if table is AlertDailyCount else table.month_ts
    q = select(table.dim, table.key, table.status, func.sum(table.n))
    if lo is not None:
        q = q.where(bucket >= lo)
    if hi is not None:
        q = q.where(bucket < hi)
    for dim, key, status, n in session.execute(q.group_by(table.dim, table.key, table.status)):
        if n:
            k = "(none)" if dim == "stream" and key == scale.NO_STREAM else key
            by[dim][k]["alerts"] += n
            by[dim][k][status] += n


def _add_counted(session: Session, f: AlertFilter, tz: ZoneInfo, by: _Counts, totals: Counter[str]) -> None:
    """Statistics of a period from the maintained counts: per day and totals from the hourly counts,
    per category/stream/rule from the monthly ones for the whole UTC months of the period, the daily
    ones for the whole days around them (or, for all time, the facet counts); the part of the period
    that is not whole hours (days) is counted from the rows, through the time index."""
    lo, hi = f.since_ts, f.until_ts
    h0, h1 = _inner(lo, hi, 3600)
    q = select(AlertHourlyCount.hour_ts, AlertHourlyCount.status, func.sum(AlertHourlyCount.n))
    if h0 is not None:
        q = q.where(AlertHourlyCount.hour_ts >= h0)
    if h1 is not None:
        q = q.where(AlertHourlyCount.hour_ts < h1)
    days: dict[int, str] = {}
    for hour, status, n in session.execute(q.group_by(AlertHourlyCount.hour_ts, AlertHourlyCount.status)):
        if not n:
            continue
        day = days.get(hour)
        if day is None:
            day = days[hour] = datetime.fromtimestamp(int(hour), tz).strftime("%Y-%m-%d")
        by["day"][day]["alerts"] += n
        by["day"][day][status] += n
        totals["alerts"] += n
        totals[status] += n
    if lo is not None and h0 is not None and lo < h0:
        _add_rows(session, f, tz, by, totals, ["day"], lo, h0 if hi is None else min(h0, hi))
    if hi is not None and h1 is not None and h1 < hi and (h0 is None or h1 >= h0):
        _add_rows(session, f, tz, by, totals, ["day"], max(h1, lo) if lo is not None else h1, hi)
    dims = ("category", "stream", "rule")
    if (lo is None and hi is None) or _covers_all(session, lo, hi):
        for dim, col in (("category", AlertFacetCount.category), ("stream", AlertFacetCount.stream_id),
                         ("rule", AlertFacetCount.rule_id)):
            fq = select(col, AlertFacetCount.status, func.sum(AlertFacetCount.n)).group_by(
                col, AlertFacetCount.status
            )
            for key, status, n in session.execute(fq):
                if n:
                    k = "(none)" if dim == "stream" and key == scale.NO_STREAM else key
                    by[dim][k]["alerts"] += n
                    by[dim][k][status] += n
        return
    d0, d1 = _inner(lo, hi, 86400)
    if d0 is None or d1 is None or d0 < d1:
        m0, m1 = _inner_months(d0, d1)
        if m0 is not None and m1 is not None and m0 >= m1:  # no whole month: days alone
            _add_keyed(session, AlertDailyCount, by, d0, d1)
        else:
            _add_keyed(session, AlertMonthlyCount, by, m0, m1)
            if m0 is not None and (d0 is None or d0 < m0):
                _add_keyed(session, AlertDailyCount, by, d0, m0)
            if m1 is not None and (d1 is None or m1 < d1):
                _add_keyed(session, AlertDailyCount, by, m1, d1)
    if lo is not None and d0 is not None and lo < d0:
        _add_rows(session, f, tz, by, totals, dims, lo, d0 if hi is None else min(d0, hi))
    if hi is not None and d1 is not None and d1 < hi and (d0 is None or d1 >= d0):
        _add_rows(session, f, tz, by, totals, dims, max(d1, lo) if lo is not None else d1, hi)


def statistics(session: Session, f: AlertFilter, timezone: str) -> Statistics:
    """Alerts and confirmed violations (confirmed or escalated) per day, category, stream and rule.

    A period alone (the usual case) is answered from the maintained counts (store.scale), at a cost
    that grows with the period's hours and the number of streams and rules, not with the alerts; other
    filters group the matching rows in the database, through the filter's index."""
    tz = ZoneInfo(timezone)
    by: _Counts = {k: defaultdict(Counter) for k in _DIMS}
    totals: Counter[str] = Counter()
    period_only = replace(f, since_ts=None, until_ts=None) == AlertFilter()
    if period_only and _whole_hour_zone(tz, f):
        _add_counted(session, f, tz, by, totals)
    else:
        _add_rows(session, f, tz, by, totals, _DIMS, None, None)
    for dim in _DIMS:  # a key whose alerts all moved elsewhere (counts of 0) is not shown
        for key in [k for k, c in by[dim].items() if not c["alerts"]]:
            del by[dim][key]
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
        return list(_LEDGER_VALUES(self))


_LEDGER_VALUES = operator.attrgetter(*(k for k, _ in LedgerRow.HEADERS))


class _LocalTime:
    """`_fmt_local` for many times: the zone's offset looked up once per UTC hour, then C strftime."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.offsets: dict[int, float] = {}

    def __call__(self, ts: float | None) -> str:
        if ts is None:
            return ""
        hour = int(ts // 3600)
        off = self.offsets.get(hour)
        if off is None:
            if len(self.offsets) > 100_000:
                self.offsets.clear()
            delta = datetime.fromtimestamp(hour * 3600, self.tz).utcoffset()
            off = self.offsets[hour] = delta.total_seconds() if delta else 0.0
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts) + off))


def _fmt_local(ts: float | None, tz: ZoneInfo) -> str:
    return "" if ts is None else datetime.fromtimestamp(float(ts), tz).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_moment(start_s: float, end_s: float) -> str:
    a, b = start_s, end_s
    return (f"{int(a // 3600):02d}:{int(a % 3600 // 60):02d}:{a % 60:04.1f}-"
            f"{int(b // 3600):02d}:{int(b % 3600 // 60):02d}:{b % 60:04.1f}")


def ledger_rows(session: Session, f: AlertFilter, timezone: str) -> list[LedgerRow]:
    """The ledger for a filter as a list (small periods, tests); exports stream `iter_ledger_rows`."""
    return list(iter_ledger_rows(session, f, timezone))


_LEDGER_COLUMNS = (
    AlertRow.id, AlertRow.time_ts, AlertRow.moment_ts, AlertRow.created_ts, AlertRow.stream_id,
    AlertRow.broadcast_id, AlertRow.start_s, AlertRow.end_s, AlertRow.category, AlertRow.code,
    AlertRow.rule_id, AlertRow.severity, AlertRow.source, AlertRow.text, AlertRow.law, AlertRow.status,
    AlertRow.decision_id,
)


def iter_ledger_rows(
    session: Session, f: AlertFilter, timezone: str, *, chunk: int = 2000
) -> Iterator[LedgerRow]:
    """The ledger for a filter (usually a period), oldest first, with each alert's latest decision and
    notes, in bounded memory whatever the period (`iter_ledger_values`, as `LedgerRow`s)."""
    for v in iter_ledger_values(session, f, timezone, chunk=chunk):
        yield LedgerRow(v[0], v[1], v[2], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13],
                        v[14], v[15], v[16], v[17], v[18], v[19], v[20], v[3])


def iter_ledger_values(
    session: Session, f: AlertFilter, timezone: str, *, chunk: int = 2000
) -> Iterator[tuple[Any, ...]]:
    """The ledger's lines as tuples in `LedgerRow.HEADERS` order (what the exports write), oldest first.

    Two streamed queries in the order of the time index (a server-side cursor on PostgreSQL, read
    `chunk` rows at a time): the alerts with their latest decision joined by `decision_id`, and the
    notes of the same alerts in the same order, merged as they come. No per-alert lookups, no ORM
    objects, and memory stays bounded whatever the period."""
    tz = ZoneInfo(timezone)
    local = _LocalTime(tz)
    conn = session.connection()
    streamed = {"stream_results": True, "yield_per": max(1, chunk)}
    manifest = AlertRow.payload["evidence"]["manifest_sha256"].as_string()
    q = (
        _base(f, [*_LEDGER_COLUMNS, manifest, Decision.reviewer, Decision.created_ts], session)
        .outerjoin(Decision, Decision.id == AlertRow.decision_id)
        .order_by(*LEDGER_ORDER)
        .execution_options(**streamed)
    )
    nq = (
        _base(f, [AlertRow.time_ts, AlertRow.start_s, AlertRow.id, Decision.reviewer, Decision.note], session)
        .join(Decision, Decision.alert_id == AlertRow.id)
        .where(Decision.note != "")
        .order_by(*LEDGER_ORDER, Decision.id)
        .execution_options(**streamed)
    )
    # NULL times (none once the triggers ran) sort first on SQLite, last on PostgreSQL
    null_ts = -math.inf if _dialect(session) == "sqlite" else math.inf
    rows = conn.execute(q)
    notes_rows = iter(conn.execute(nq))
    # the notes of the alerts at the current (time, start) key, by alert id; notes of alerts the first
    # query did not see (written between the two queries' snapshots) are passed over
    head = next(notes_rows, None)
    head_key = (null_ts if head[0] is None else head[0], head[1]) if head is not None else None
    notes: dict[str, list[str]] = {}
    notes_key: tuple[float, float] | None = None
    states = STATUS_NAMES
    categories = CATEGORY_NAMES
    moment = _fmt_moment
    seq = 0
    for (alert_id, time_ts, moment_ts, created_ts, stream_id, broadcast_id, start_s, end_s, category, code,
         rule_id, severity, source, text_, law, status, decision_id, manifest_sha, reviewer, decided_ts) in rows:
        seq += 1
        note = ""
        if head_key is not None or notes:
            key = (null_ts if time_ts is None else time_ts, start_s)
            if notes and notes_key != key:
                notes.clear()
            while head is not None and head_key is not None and head_key <= key:
                if head_key == key:
                    notes_key = key
                    notes.setdefault(head[2], []).append(f"{head[3]}: {head[4]}")
                head = next(notes_rows, None)
                head_key = (null_ts if head[0] is None else head[0], head[1]) if head is not None else None
            if notes:
                got = notes.pop(alert_id, None)
                if got:
                    note = " | ".join(got)
        decided = decision_id is not None and decided_ts is not None and status != "unreviewed"
        yield (
            seq,
            alert_id,
            local(moment_ts if moment_ts is not None else created_ts),
            "broadcast" if moment_ts is not None else "scan",
            stream_id or "",
            broadcast_id,
            moment(start_s, end_s),
            category,
            categories.get(category, category),
            code,
            rule_id,
            severity,
            source,
            text_,
            law,
            status,
            states.get(status, status),
            (reviewer or "") if decided else "",
            local(decided_ts) if decided else "",
            note,
            str(manifest_sha or ""),
        )
