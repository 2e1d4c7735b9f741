"""One analysed batch of a live broadcast into the store, in one transaction of the database writer.

The alerts (new or grown; a repeat of the previous connection's alert at the same moment of the source
is not raised again), their webhook outbox rows, the recording range they pin against retention, the
price claims and their links, and the batch's watermark (utterances marked analysed, or the captions
with the video watermark). Runs on the writer thread only.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from alerts.evidence import alert_payload
from alerts.types import Alert
from alerts.webhook import WebhookConfig
from alerts.worker import AnalysisResult
from app.webhooks import enqueue
from detectors.types import VideoBatch
from store.live import LiveStore
from store.models import AlertRow
from store.prices import link_claim_alerts, save_claims

logger = logging.getLogger(__name__)

ANALYSIS_STAMPS = ("published_ts", "received_ts")  # set after the line was stored (asr/timing.py)


def live_payload(alert: Alert, stream_id: str | None, folder: str) -> dict[str, Any]:
    """The stored payload of a live alert: the scan's, marked live, its evidence still to be cut."""
    payload = alert_payload(alert, stream_id=stream_id, media_path=folder)
    payload.update({"live": True, "evidence_status": "pending", "evidence": None})
    return payload


def store_result(
    s: Session,
    result: AnalysisResult,
    *,
    folder: str,
    pre_roll_s: float,
    post_roll_s: float,
    hooks: list[WebhookConfig],
    now: float,
) -> list[str]:
    """Store one analysed batch (see the module docstring); the ids of the alerts raised anew."""
    batch = result.batch
    new: list[str] = []
    for alert in result.alerts:
        payload = live_payload(alert, batch.stream_id, folder)
        if s.get(AlertRow, alert.alert_id) is None:
            earlier = LiveStore.repeats(s, alert, batch.stream_id, result.source_start_s)
            if earlier is not None:
                logger.info(
                    "alert %s repeats %s of the previous connection (same moment of the source); "
                    "not raised again",
                    alert.alert_id,
                    earlier,
                )
                continue
        if LiveStore.upsert_alert(s, alert, payload, batch.stream_id):
            new.append(alert.alert_id)
            enqueue(s, alert.alert_id, alert.category, alert.severity, hooks, now)
        LiveStore.pin_range(s, batch.broadcast_id, alert.start_s - pre_roll_s, alert.end_s + post_roll_s)
    if result.new_claims:
        save_claims(
            s,
            broadcast_id=batch.broadcast_id,
            stream_id=batch.stream_id,
            started_ts=result.started_ts,
            claims=list(result.claims),
        )
    if result.new_claims or any(a.category == "price_fraud" for a in result.alerts):
        link_claim_alerts(s, batch.broadcast_id)
    if isinstance(batch, VideoBatch):
        LiveStore.store_captions(
            s, batch.broadcast_id, batch.captions, batch.done_s, batch.final, batch.resume_s
        )
    else:
        utts = batch.utterances
        # the hop stamps the line gathered after it was stored (asr/timing.py): kept with it
        stamps = {
            u.index: {
                k: float(v) for k, v in u.meta.items() if k in ANALYSIS_STAMPS and isinstance(v, (int, float))
            }
            for u in utts
        }
        LiveStore.mark_analyzed(
            s, batch.broadcast_id, [u.index for u in utts], batch.done_s, batch.final, stamps
        )
    return new
