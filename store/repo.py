"""Repository functions over the models: small, explicit, one transaction per caller's session.

Writers pass their own session and commit; these functions never commit on their own, so a caller can
make a whole scan's results appear at once (or not at all).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Text, cast, delete, select
from sqlalchemy.orm import Session

from alerts.types import Alert, Evidence
from asr.types import Utterance, Word
from store.models import AlertRow, Broadcast, DetectionRow, EvidenceFileRow, Stream, UtteranceRow
from store.paths import resolve_payload, resolve_payload_text, session_data_dir, stored_payload, to_stored

__all__ = [
    "alert_payloads",
    "ensure_stream",
    "iter_alert_payloads",
    "load_utterances",
    "replace_utterances",
    "save_alert",
    "utterance_from_row",
]


def ensure_stream(session: Session, stream_id: str, url: str = "", name: str = "") -> Stream:
    row = session.get(Stream, stream_id)
    if row is None:
        row = Stream(id=stream_id, url=url, name=name or stream_id, created_ts=time.time())
        session.add(row)
    elif url and row.url != url:
        row.url = url
    return row


def utterance_to_row(broadcast_id: str, u: Utterance) -> UtteranceRow:
    return UtteranceRow(
        broadcast_id=broadcast_id, source=u.source, idx=u.index, start_s=u.start_s, end_s=u.end_s, text=u.text,
        raw_text=u.raw_text, words=[[w.text, w.start_s, w.end_s, w.probability] for w in u.words],
        avg_logprob=u.avg_logprob, no_speech_prob=u.no_speech_prob, meta=dict(u.meta),
    )


def utterance_from_row(r: UtteranceRow) -> Utterance:
    return Utterance(
        index=r.idx, start_s=r.start_s, end_s=r.end_s, text=r.text,
        words=tuple(Word(str(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in (r.words or [])),
        source=r.source, raw_text=r.raw_text, avg_logprob=r.avg_logprob, no_speech_prob=r.no_speech_prob,
        meta=dict(r.meta or {}),
    )


def replace_utterances(session: Session, broadcast_id: str, source: str, utterances: Iterable[Utterance]) -> None:
    session.execute(
        delete(UtteranceRow).where(UtteranceRow.broadcast_id == broadcast_id, UtteranceRow.source == source)
    )
    session.add_all(utterance_to_row(broadcast_id, u) for u in utterances)


def load_utterances(session: Session, broadcast_id: str, source: str | None = None) -> list[Utterance]:
    q = select(UtteranceRow).where(UtteranceRow.broadcast_id == broadcast_id)
    if source:
        q = q.where(UtteranceRow.source == source)
    rows = session.scalars(q.order_by(UtteranceRow.start_s, UtteranceRow.idx)).all()
    return [utterance_from_row(r) for r in rows]


def save_alert(session: Session, alert: Alert, payload: dict[str, Any], evidence: Evidence | None,
               stream_id: str | None) -> bool:
    """Store an alert with its detections and evidence hashes. Returns False if it was already stored.

    The evidence folder is stored relative to the session's data directory (store.paths)."""
    if session.get(AlertRow, alert.alert_id) is not None:
        return False
    ev_dir = to_stored(evidence.dir, session_data_dir(session)) if evidence else None
    session.add(
        AlertRow(
            id=alert.alert_id, broadcast_id=alert.broadcast_id, stream_id=stream_id, category=alert.category,
            code=alert.code, rule_id=alert.rule_id, severity=alert.severity, source=alert.source,
            start_s=alert.start_s, end_s=alert.end_s, start_ts=alert.start_ts, text=alert.text,
            context=alert.context, law=alert.law, rules_version=alert.rules_version,
            evidence_dir=ev_dir, evidence_status="done" if evidence else "pending",
            payload=stored_payload(payload, ev_dir), created_ts=time.time(),
        )
    )
    session.flush()
    for d in alert.detections:
        session.add(
            DetectionRow(
                alert_id=alert.alert_id, broadcast_id=alert.broadcast_id, rule_id=d.rule_id, category=d.category,
                code=d.code, severity=d.severity, source=d.source, start_s=d.start_s, end_s=d.end_s,
                matched=d.matched, text=d.text, score=d.score, mode=d.mode, details=_jsonable(d.details),
            )
        )
    if evidence:
        set_evidence(session, alert.alert_id, evidence, payload)
    return True


def set_evidence(session: Session, alert_id: str, evidence: Evidence, payload: dict[str, Any]) -> None:
    row = session.get(AlertRow, alert_id)
    if row is None:
        raise KeyError(alert_id)
    row.evidence_dir = to_stored(evidence.dir, session_data_dir(session))
    row.evidence_status = "done"
    row.payload = stored_payload(payload, row.evidence_dir)
    session.execute(delete(EvidenceFileRow).where(EvidenceFileRow.alert_id == alert_id))
    for f in evidence.files:
        session.add(EvidenceFileRow(alert_id=alert_id, name=f.name, kind=f.kind, sha256=f.sha256, size=f.size))
    session.add(EvidenceFileRow(alert_id=alert_id, name="manifest.json", kind="manifest",
                                sha256=evidence.manifest_sha256, size=0))


def alert_payloads(session: Session, *, alert_ids: Sequence[str] | None = None,
                   broadcast_ids: Sequence[str] | None = None,
                   stream_id: str | None = None, category: str | None = None, limit: int | None = None
                   ) -> list[dict[str, Any]]:
    q = select(AlertRow)
    if alert_ids is not None:
        q = q.where(AlertRow.id.in_(list(alert_ids)))
    if broadcast_ids is not None:
        q = q.where(AlertRow.broadcast_id.in_(list(broadcast_ids)))
    if stream_id:
        q = q.where(AlertRow.stream_id == stream_id)
    if category:
        q = q.where(AlertRow.category == category)
    q = q.order_by(AlertRow.broadcast_id, AlertRow.start_s, AlertRow.category)
    if limit:
        q = q.limit(limit)
    data_dir = session_data_dir(session)
    return [resolve_payload(dict(r.payload), r.evidence_dir, data_dir) for r in session.scalars(q)]


def iter_alert_payloads(session: Session, *, stream_id: str | None = None, category: str | None = None,
                        limit: int | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every stored alert (per broadcast, in time order) as a stream: one query read `batch` rows at a
    time (a server-side cursor on PostgreSQL), in the order of the broadcast index, so memory stays
    bounded at any size."""
    q = select(AlertRow.payload, AlertRow.evidence_dir)
    if stream_id:
        q = q.where(AlertRow.stream_id == stream_id)
    if category:
        q = q.where(AlertRow.category == category)
    q = q.order_by(AlertRow.broadcast_id, AlertRow.time_ts, AlertRow.start_s, AlertRow.id)
    if limit:
        q = q.limit(limit)
    data_dir = session_data_dir(session)
    for payload, ev_dir in session.execute(q.execution_options(stream_results=True, yield_per=batch)):
        yield resolve_payload(dict(payload), ev_dir, data_dir)


def iter_alert_payload_lines(session: Session, *, stream_id: str | None = None, category: str | None = None,
                             limit: int | None = None, batch: int = 1000) -> Iterator[str]:
    """`iter_alert_payloads` as JSON text, one line each (no newline), the same objects in the same order:
    the stored JSON is read as text and passed through with only its evidence paths resolved
    (store.paths.resolve_payload_text), not decoded and encoded again per alert."""
    q = select(cast(AlertRow.payload, Text), AlertRow.evidence_dir)
    if stream_id:
        q = q.where(AlertRow.stream_id == stream_id)
    if category:
        q = q.where(AlertRow.category == category)
    q = q.order_by(AlertRow.broadcast_id, AlertRow.time_ts, AlertRow.start_s, AlertRow.id)
    if limit:
        q = q.limit(limit)
    data_dir = session_data_dir(session)
    resolve = resolve_payload_text
    for raw, ev_dir in session.execute(q.execution_options(stream_results=True, yield_per=batch)):
        yield resolve(raw, ev_dir, data_dir) if raw is not None and raw != "null" else "{}"


def count_alerts(session: Session) -> int:
    """How many alerts are stored, from the maintained counts (store.scale), not by reading them."""
    from sqlalchemy import func

    from store.models import AlertFacetCount

    return int(session.scalar(select(func.coalesce(func.sum(AlertFacetCount.n), 0))) or 0)


def broadcast(session: Session, broadcast_id: str) -> Broadcast | None:
    return session.get(Broadcast, broadcast_id)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(value))
    return str(value)
