"""Price claims and reference prices in the database: the history the price checks read.

* `SqlPriceHistory(db)` implements `detectors.price.PriceHistory` over SQLAlchemy. Each call opens its
  own short session, so it is safe to use from the analysis worker while the writer commits (SQLite
  runs in WAL mode); it sees only committed claims.
* `save_claims(session, ...)` writes one broadcast's claims inside the caller's transaction (it never
  commits), replacing what an earlier scan of the same broadcast stored, so re-scans stay idempotent.
* `link_claim_alerts(session, broadcast_id)` points each claim at the price_fraud alert that covers it,
  so a later contradiction can cite the earlier moment's evidence.
* `import_reference_prices(db, path)` loads known prices (CSV or JSON: product, price, date, source).
* `list_claims(db, stream_id=None)` is the claim history for `livewatch prices list`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from detectors.price import HistoricClaim, KnownPrice
from detectors.types import PriceClaim
from store.db import Database
from store.models import AlertRow, PriceClaimRow, ReferencePrice

__all__ = [
    "ClaimListing",
    "ReferencePriceError",
    "SqlPriceHistory",
    "claim_from_row",
    "import_reference_prices",
    "link_claim_alerts",
    "list_claims",
    "parse_reference_prices",
    "save_claims",
]

logger = logging.getLogger(__name__)


class ReferencePriceError(Exception):
    """A reference-price file that cannot be imported; the message names file and line (or item)."""


def claim_from_row(r: PriceClaimRow) -> PriceClaim:
    return PriceClaim(
        source=r.source,
        start_s=r.start_s,
        end_s=r.end_s,
        text=r.text,
        reference_price=r.reference_price,
        reference_kind=r.reference_kind,
        current_price=r.current_price,
        current_kind=r.current_kind,
        discount=r.discount,
        reduction=r.reduction,
        conditions=tuple(r.conditions or ()),
        product=r.product,
        pressure=tuple(r.pressure or ()),
        basis=r.basis,
    )


class SqlPriceHistory:
    """`PriceHistory` over the database (read-only; one short session per call)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claims_for(
        self, stream_id: str, since_ts: float, until_ts: float, product: str | None = None
    ) -> list[HistoricClaim]:
        q = (
            select(PriceClaimRow, AlertRow.evidence_dir)
            .outerjoin(AlertRow, AlertRow.id == PriceClaimRow.alert_id)
            .where(
                PriceClaimRow.stream_id == stream_id,
                PriceClaimRow.ts.is_not(None),
                PriceClaimRow.ts >= since_ts,
                PriceClaimRow.ts < until_ts,
            )
            .order_by(PriceClaimRow.ts, PriceClaimRow.id)
        )
        if product is not None:
            q = q.where(PriceClaimRow.product == product)
        with self.db.session() as s:
            rows = s.execute(q).all()
            return [
                HistoricClaim(
                    claim=claim_from_row(r),
                    ts=float(r.ts or 0.0),
                    broadcast_id=r.broadcast_id,
                    stream_id=r.stream_id,
                    claim_id=r.id,
                    alert_id=r.alert_id,
                    evidence_dir=ev,
                )
                for r, ev in rows
            ]

    def reference_prices(self, product: str | None, since_ts: float) -> list[KnownPrice]:
        q = select(ReferencePrice).where(ReferencePrice.ts >= since_ts).order_by(ReferencePrice.ts)
        if product is not None:
            # exact or containing names; fuzzy (pinyin) matching is the checker's job
            q = q.where(or_(ReferencePrice.product == product, ReferencePrice.product.contains(product)))
        with self.db.session() as s:
            return [
                KnownPrice(product=r.product, price=r.price, ts=r.ts, source=r.source)
                for r in s.scalars(q).all()
            ]


def save_claims(
    session: Session,
    *,
    broadcast_id: str,
    stream_id: str | None,
    started_ts: float | None,
    claims: Iterable[PriceClaim],
) -> list[PriceClaimRow]:
    """Replace the stored claims of `broadcast_id` with `claims` (ts = started_ts + start_s)."""
    session.execute(delete(PriceClaimRow).where(PriceClaimRow.broadcast_id == broadcast_id))
    rows = []
    for c in claims:
        row = PriceClaimRow(
            broadcast_id=broadcast_id,
            stream_id=stream_id,
            source=c.source,
            start_s=c.start_s,
            end_s=c.end_s,
            ts=None if started_ts is None else started_ts + c.start_s,
            text=c.text,
            product=c.product,
            reference_price=c.reference_price,
            reference_kind=c.reference_kind,
            current_price=c.current_price,
            current_kind=c.current_kind,
            discount=c.discount,
            reduction=c.reduction,
            conditions=list(c.conditions),
            pressure=list(c.pressure),
            basis=c.basis,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def link_claim_alerts(session: Session, broadcast_id: str, slack_s: float = 1.0) -> int:
    """Set each claim's alert_id to the price_fraud alert of the same source that overlaps it."""
    alerts = session.scalars(
        select(AlertRow)
        .where(AlertRow.broadcast_id == broadcast_id, AlertRow.category == "price_fraud")
        .order_by(AlertRow.start_s)
    ).all()
    n = 0
    for row in session.scalars(select(PriceClaimRow).where(PriceClaimRow.broadcast_id == broadcast_id)).all():
        best = None
        for a in alerts:
            if a.start_s <= row.end_s + slack_s and a.end_s >= row.start_s - slack_s:
                if best is None or (a.source == row.source and best.source != row.source):
                    best = a
        if best is not None and row.alert_id != best.id:
            row.alert_id = best.id
            n += 1
    session.flush()
    return n


# --------------------------------------------------------------------------------------------------
# Reference prices from outside

_HEADER_ALIASES = {
    "product": ("product", "name", "商品", "商品名", "产品", "品名"),
    "price": ("price", "价格", "售价", "成交价"),
    "date": ("date", "ts", "time", "日期", "时间"),
    "source": ("source", "来源", "渠道"),
}


@dataclass(frozen=True, slots=True)
class _Known:
    product: str
    price: float
    ts: float
    source: str


def _parse_when(value: Any, tz: ZoneInfo, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        raise ReferencePriceError(f"{where}: date is empty")
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) == 10 and text[4] in "-/." and text[7] in "-/.":
            d = date(int(text[:4]), int(text[5:7]), int(text[8:10]))
            return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ReferencePriceError(
            f"{where}: date '{text}' is not YYYY-MM-DD, ISO 8601 or epoch seconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def _parse_price(value: Any, where: str) -> float:
    text = str(value).strip().replace(",", "").replace("¥", "").replace("￥", "").replace("元", "")
    try:
        price = float(text)
    except ValueError:
        from detectors.price import parse_amount

        parsed = parse_amount(text)
        if parsed is None:
            raise ReferencePriceError(f"{where}: price '{value}' is not a number") from None
        price = parsed
    if price <= 0:
        raise ReferencePriceError(f"{where}: price must be positive, got {value}")
    return price


def _record(item: dict[str, Any], where: str, tz: ZoneInfo, default_source: str) -> _Known:
    lowered = {str(k).strip().lower(): v for k, v in item.items() if k is not None}
    picked: dict[str, Any] = {}
    for field, aliases in _HEADER_ALIASES.items():
        for a in aliases:
            if a in lowered and lowered[a] not in (None, ""):
                picked[field] = lowered[a]
                break
    for need in ("product", "price", "date"):
        if need not in picked:
            raise ReferencePriceError(f"{where}: missing '{need}' (columns: product, price, date, source)")
    product = str(picked["product"]).strip()
    if not product:
        raise ReferencePriceError(f"{where}: product is empty")
    return _Known(
        product,
        _parse_price(picked["price"], where),
        _parse_when(picked["date"], tz, where),
        str(picked.get("source", default_source) or default_source),
    )


def parse_reference_prices(path: Path, *, timezone: str = "Asia/Shanghai") -> list[_Known]:
    """Read a CSV (header: product, price, date[, source]) or JSON (a list, or {"prices": [...]})."""
    tz = ZoneInfo(timezone)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ReferencePriceError(f"{path}: cannot read: {e.strerror}") from None
    default_source = path.name
    if path.suffix.lower() == ".json" or raw.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ReferencePriceError(f"{path}:{e.lineno}: JSON error: {e.msg}") from None
        items = data.get("prices") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ReferencePriceError(f'{path}: expected a list of prices or {{"prices": [...]}}')
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ReferencePriceError(f"{path}: item {i}: expected an object")
            out.append(_record(item, f"{path}: item {i}", tz, default_source))
        return out
    reader = csv.DictReader(io.StringIO(raw))
    if not reader.fieldnames:
        raise ReferencePriceError(f"{path}:1: empty CSV (header: product, price, date, source)")
    out = []
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        out.append(_record(row, f"{path}:{reader.line_num}", tz, default_source))
    return out


def import_reference_prices(db: Database, path: Path, *, timezone: str = "Asia/Shanghai") -> tuple[int, int]:
    """Import known prices; returns (added, already present). All or nothing: a bad line imports none."""
    records = parse_reference_prices(path, timezone=timezone)
    added = skipped = 0
    with db.session() as s, s.begin():
        for r in records:
            exists = s.scalar(
                select(ReferencePrice.id)
                .where(
                    ReferencePrice.product == r.product,
                    ReferencePrice.price == r.price,
                    ReferencePrice.ts == r.ts,
                    ReferencePrice.source == r.source,
                )
                .limit(1)
            )
            if exists is not None:
                skipped += 1
                continue
            s.add(ReferencePrice(product=r.product, price=r.price, ts=r.ts, source=r.source))
            added += 1
    logger.info("imported %s reference prices from %s (%s already present)", added, path, skipped)
    return added, skipped


# --------------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True, slots=True)
class ClaimListing:
    id: int
    stream_id: str | None
    broadcast_id: str
    ts: float | None
    claim: PriceClaim
    alert_id: str | None

    @property
    def when(self) -> str:
        if self.ts is None:
            return ""
        return datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="seconds")


def list_claims(
    db: Database,
    stream_id: str | None = None,
    *,
    product: str | None = None,
    limit: int = 500,
    streams: Sequence[str] | None = None,
) -> list[ClaimListing]:
    """Stored claims, oldest first (the last `limit`), optionally of one stream or product."""
    q = select(PriceClaimRow)
    if stream_id is not None:
        q = q.where(PriceClaimRow.stream_id == stream_id)
    if streams:
        q = q.where(PriceClaimRow.stream_id.in_(list(streams)))
    if product is not None:
        q = q.where(PriceClaimRow.product.contains(product))
    q = q.order_by(PriceClaimRow.ts.desc().nulls_last(), PriceClaimRow.id.desc()).limit(limit)
    with db.session() as s:
        rows = list(s.scalars(q).all())
    rows.reverse()
    return [
        ClaimListing(r.id, r.stream_id, r.broadcast_id, r.ts, claim_from_row(r), r.alert_id) for r in rows
    ]
