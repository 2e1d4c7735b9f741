"""Webhook delivery of alerts: what a webhook is and the pure rules of delivery (config, signature,
backoff, which alerts a hook takes). The outbox and the delivery thread, which need the store, are in
app/webhooks.py (`enqueue`, `WebhookDelivery`).

When an alert is stored, one `WebhookOutbox` row per configured webhook is added *in the same
transaction* (`enqueue`). `WebhookDelivery` then POSTs due rows: the alert's JSON payload, signed with
HMAC-SHA256 over "<timestamp>.<body>" (`X-Livewatch-Signature: sha256=<hex>`, with
`X-Livewatch-Timestamp`, and `X-Livewatch-Delivery` = the outbox row id, stable across retries so
receivers can drop duplicates). A 2xx answer marks the row delivered; anything else schedules the
next try with exponential backoff, up to `max_attempts`. Delivery is at-least-once: a crash between a
receiver's 2xx and our commit sends that alert again, with the same delivery id.

Operational events (a refused rules reload, ...) go to every configured webhook as
``{"type": "ops", "event": ..., ...}``, signed the same way (`X-Livewatch-Delivery: ops-<n>`), from
an in-memory queue (`notify_ops`): best effort, `OPS_ATTEMPTS` tries, not kept across a restart (the
state they report is in `livewatch status` and /metrics too). That queue holds `OPS_QUEUE_MAX` events;
one more pushes out the oldest, which is counted (`ops_dropped`, in the status) and logged, never
silently lost. Alerts' deliveries have no such bound to meet: the outbox rows are the queue, read 50
due rows a round, so a receiver that is down only makes the rows wait.

Concurrency contract: one `WebhookDelivery` thread per monitor. It reads with its own sessions and
writes through the `write` callable it is given (the monitor's single database writer; it must return
only once the write is committed, so the next round never re-reads a row it has just handled), or
directly with its own session when none is given. `stop()` may be called from any thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from pydantic import BaseModel, ConfigDict, Field

from detectors.types import SEVERITIES

__all__ = [
    "OPS_ATTEMPTS",
    "OPS_QUEUE_MAX",
    "WebhookConfig",
    "retry_delay",
    "sign",
    "wants",
]

logger = logging.getLogger(__name__)

OPS_ATTEMPTS = 3
OPS_QUEUE_MAX = 100



class WebhookConfig(BaseModel):
    """One receiver of alert notifications."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., pattern=r"^https?://", description="Endpoint that receives a POST per alert.")
    secret: str | None = Field(
        None, description="HMAC-SHA256 key for X-Livewatch-Signature (prefer secret_env)."
    )
    secret_env: str | None = Field(None, description="Name of an environment variable holding the HMAC key.")
    categories: list[str] = Field(default_factory=list, description="Only these categories (empty = all).")
    min_severity: str = Field(
        "low", description="Only alerts at or above this severity (low|medium|high|critical)."
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one POST.")
    max_attempts: int = Field(12, ge=1, description="Give up on an alert after this many failed POSTs.")
    backoff_initial_s: float = Field(2.0, gt=0, description="Wait after the first failure.")
    backoff_max_s: float = Field(600.0, gt=0, description="Longest wait between tries.")

    def key(self) -> bytes | None:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value.encode()
            logger.warning("webhook %s: $%s is not set; posting unsigned", self.url, self.secret_env)
        return self.secret.encode() if self.secret else None


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """'sha256=<hex>' of HMAC-SHA256(key, timestamp + '.' + body). Pure."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, initial_s: float, max_s: float) -> float:
    """Wait after `attempts` failed tries (1 = the first failure). Pure."""
    return float(min(max_s, initial_s * 2 ** max(0, attempts - 1)))


def wants(hook: WebhookConfig, category: str, severity: str) -> bool:
    """Whether `hook` takes an alert of this category and severity. Pure."""
    if hook.categories and category not in hook.categories:
        return False
    rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
    floor = SEVERITIES.index(hook.min_severity) if hook.min_severity in SEVERITIES else 0
    return rank >= floor
