"""SQLAlchemy 2 models.

One writer owns the database in a running monitor; readers (review app, CLI listings) open their own
sessions. All `*_ts` columns are UTC epoch seconds (floats), `*_s` columns seconds from the broadcast's
start. Rows are never updated in place where history matters: decisions append.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false as sa_false


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Stream(Base):
    """A live room (or a named source of recordings)."""

    __tablename__ = "streams"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(Text, default="")
    name: Mapped[str] = mapped_column(String(256), default="")
    created_ts: Mapped[float] = mapped_column(Float)


class Broadcast(Base):
    """One timeline: a scanned media file (kind='file') or one continuous live session (kind='live')."""

    __tablename__ = "broadcasts"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # live: <stream 60>-<UTC>-<hex4>
    stream_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)  # media path or stream URL
    media_sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    media_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|done|failed|live|ended
    rules_version: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # asr signature, options, stats
    created_ts: Mapped[float] = mapped_column(Float)
    # the monitor instance that records and processes it (store.leases); NULL: a scan, a bus-published
    # broadcast, or a live one from before revision 0009 (claimed by the first monitor that resumes it)
    owner: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    # -- a live broadcast's progress through the pipeline (revision 0010; was keys of `meta`) ------------
    folder: Mapped[str | None] = mapped_column(Text, nullable=True)  # recordings, relative to the data dir
    source_start_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # source clock at start_s 0
    media_gap_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # media lost before this one
    hls_last_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # last HLS segment recorded
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    asr_done_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # transcribed up to
    asr_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    analyzed_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # analysed up to
    analysis_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    video_expected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    video_done_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # video read up to
    video_resume_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # oldest caption on screen
    video_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    bus_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # last bus batch committed
    # the bus ASR worker's last stored batch: its seq and its first line's index (revision 0011)
    asr_bus_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    asr_bus_idx: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # the last video batch an analyze worker committed from the bus: its reader and place (revision 0012)
    bus_video_epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bus_video_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class MonitorLease(Base):
    """A monitor instance's lease on its own work (store.leases): taken at start, renewed by a heartbeat,
    released (expired at once) at a clean stop. Broadcasts name their owner by `owner`."""

    __tablename__ = "monitor_leases"
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    data_dir: Mapped[str] = mapped_column(Text)  # absolute, as the owner sees it
    started_ts: Mapped[float] = mapped_column(Float)
    heartbeat_ts: Mapped[float] = mapped_column(Float)
    expires_ts: Mapped[float] = mapped_column(Float)


class MediaSegmentRow(Base):
    """A recorded copy-codec file of a live broadcast. Status: recorded -> transcribed -> analyzed."""

    __tablename__ = "media_segments"
    __table_args__ = (UniqueConstraint("broadcast_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="recorded")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ts: Mapped[float] = mapped_column(Float)


class BroadcastGap(Base):
    """A stretch of a stream with no recording (drop, offline, reconnect). Stored, never hidden."""

    __tablename__ = "broadcast_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(String(128), index=True)
    start_ts: Mapped[float] = mapped_column(Float)
    end_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class UtteranceRow(Base):
    __tablename__ = "utterances"
    __table_args__ = (UniqueConstraint("broadcast_id", "source", "idx"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="speech")
    idx: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    raw_text: Mapped[str] = mapped_column(Text, default="")
    words: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[text, start_s, end_s, prob], ...]
    avg_logprob: Mapped[float] = mapped_column(Float, default=0.0)
    no_speech_prob: Mapped[float] = mapped_column(Float, default=0.0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    analyzed: Mapped[bool] = mapped_column(Boolean, default=False)


class AlertRow(Base):
    """An alert. `moment_ts`, `time_ts`, `status` and `decision_id` are derived by the database's
    triggers (store.scale): writers leave them unset (NULL / 'unreviewed')."""

    __tablename__ = "alerts"
    # the review queue's orders and filters (store.scale, review.queries): newest first, by a filter
    __table_args__ = (
        Index("ix_alerts_queue", "time_ts", "start_s", "id"),
        Index("ix_alerts_stream_queue", "stream_id", "time_ts", "start_s", "id"),
        Index("ix_alerts_category_queue", "category", "time_ts", "start_s", "id"),
        Index("ix_alerts_status_queue", "status", "time_ts", "start_s", "id"),
        Index("ix_alerts_severity_queue", "severity", "time_ts", "start_s", "id"),
        Index("ix_alerts_rule_queue", "rule_id", "time_ts", "start_s", "id"),
        Index("ix_alerts_broadcast_queue", "broadcast_id", "time_ts", "start_s", "id"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id"))
    stream_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    start_ts: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    text: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text, default="")
    law: Mapped[str] = mapped_column(Text, default="")
    rules_version: Mapped[str] = mapped_column(String(64))
    evidence_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence_status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the alert JSON handed out
    created_ts: Mapped[float] = mapped_column(Float, index=True)
    # derived (store.scale triggers): the broadcast moment (NULL if unknown), the queue's time, status
    moment_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="unreviewed", server_default="unreviewed")
    decision_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AlertFacetCount(Base):
    """Alerts per stream/category/rule/severity/source/status (store.scale keeps it; '' = no stream)."""

    __tablename__ = "alert_facets"
    stream_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class AlertHourlyCount(Base):
    """Alerts per UTC hour (epoch seconds of its start) and status (store.scale keeps it)."""

    __tablename__ = "alert_hourly"
    hour_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class AlertDailyCount(Base):
    """Alerts per UTC day, dimension (stream | category | rule), its key and status (store.scale)."""

    __tablename__ = "alert_daily"
    day_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class AlertMonthlyCount(Base):
    """Alerts per UTC calendar month (epoch seconds of its start), dimension, key and status: alert_daily
    rolled up (store.scale keeps it; revision 0008)."""

    __tablename__ = "alert_monthly"
    month_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class DetectionRow(Base):
    __tablename__ = "detections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    broadcast_id: Mapped[str] = mapped_column(String(128), index=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    matched: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    mode: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EvidenceFileRow(Base):
    __tablename__ = "evidence_files"
    __table_args__ = (UniqueConstraint("alert_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class EvidenceCheck(Base):
    """The latest verification of one evidence file (the background pass over the evidence store, or a
    reviewer's Verify): `state` ok / missing / changed, the SHA-256 seen (None when missing), when.
    For `manifest.json`, `signature` is the capture manifest's signature status (valid / untrusted /
    invalid / unsigned)."""

    __tablename__ = "evidence_checks"
    __table_args__ = (UniqueConstraint("alert_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    checked_ts: Mapped[float] = mapped_column(Float, index=True)
    sha256_seen: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)


class Decision(Base):
    """A reviewer's decision on an alert. Append-only: the latest row is the current status."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    decision: Mapped[str] = mapped_column(String(32))  # confirmed | false_positive | escalated | note
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(128))
    created_ts: Mapped[float] = mapped_column(Float)
    # the decision this row takes back (review undo); its `decision` is the status restored
    undoes_id: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)


class PriceClaimRow(Base):
    __tablename__ = "price_claims"
    __table_args__ = (Index("ix_price_claims_stream_ts", "stream_id", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    stream_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    ts: Mapped[float | None] = mapped_column(Float, nullable=True)  # wall clock of the claim
    text: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(String(256), nullable=True)
    reference_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    current_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    current_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    discount: Mapped[float | None] = mapped_column(Float, nullable=True)
    reduction: Mapped[float | None] = mapped_column(Float, nullable=True)
    conditions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pressure: Mapped[list[Any]] = mapped_column(JSON, default=list)  # 最后一天, 涨价, 恢复原价, 仅剩
    basis: Mapped[str | None] = mapped_column(Text, nullable=True)  # stated basis of the reference price
    alert_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReferencePrice(Base):
    """A known price from outside (imported CSV/JSON): product, price, date, source."""

    __tablename__ = "reference_prices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(256), index=True)
    price: Mapped[float] = mapped_column(Float)
    ts: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text, default="")


class WebhookOutbox(Base):
    """Alerts waiting to be POSTed to a webhook; delivered rows keep their delivery time."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (UniqueConstraint("alert_id", "url"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_ts: Mapped[float] = mapped_column(Float)
    delivered_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReviewSession(Base):
    """A review-app login. The cookie carries the session id; only its SHA-256 is stored here. A request
    is let in while the row exists, `revoked_ts` is null and `expires_ts` is in the future."""

    __tablename__ = "review_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the session id
    username: Mapped[str] = mapped_column(String(128))
    created_ts: Mapped[float] = mapped_column(Float)
    expires_ts: Mapped[float] = mapped_column(Float, index=True)
    revoked_ts: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
