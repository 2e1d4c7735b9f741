"""Webhook delivery of alerts through an outbox table, so a restart loses none.

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
state they report is in `livewatch status` and /metrics too).

Concurrency contract: one `WebhookDelivery` thread per monitor. It reads with its own sessions and
writes through the `write` callable it is given (the monitor's single database writer; it must return
only once the write is committed, so the next round never re-reads a row it has just handled), or
directly with its own session when none is given. `stop()` may be called from any thread.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from detectors.types import SEVERITIES
from store.db import Database
from store.models import AlertRow, WebhookOutbox

__all__ = [
    "WebhookConfig",
    "WebhookDelivery",
    "enqueue",
    "retry_delay",
    "sign",
    "wants",
]

logger = logging.getLogger(__name__)

OPS_ATTEMPTS = 3
OPS_QUEUE_MAX = 100

WriteFn = Callable[[Callable[[Session], None]], None]


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


def enqueue(
    session: Session,
    alert_id: str,
    category: str,
    severity: str,
    hooks: Iterable[WebhookConfig],
    now_ts: float,
) -> int:
    """Add outbox rows for an alert (in the caller's transaction). Existing rows are kept. Returns rows added."""
    added = 0
    for hook in hooks:
        if not wants(hook, category, severity):
            continue
        exists = session.scalar(
            select(WebhookOutbox.id).where(WebhookOutbox.alert_id == alert_id, WebhookOutbox.url == hook.url)
        )
        if exists is None:
            session.add(WebhookOutbox(alert_id=alert_id, url=hook.url, attempts=0, next_try_ts=now_ts))
            added += 1
    return added


class WebhookDelivery:
    """Posts due outbox rows; see the module docstring."""

    def __init__(
        self,
        db: Database,
        hooks: Sequence[WebhookConfig],
        *,
        write: WriteFn | None = None,
        transport: httpx.BaseTransport | None = None,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.hooks = {h.url: h for h in hooks}
        self._write = write or self._write_direct
        self._client = httpx.Client(transport=transport, follow_redirects=False)
        self._poll_s = poll_s
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self._ops: collections.deque[tuple[int, dict[str, Any], int]] = collections.deque(
            maxlen=OPS_QUEUE_MAX
        )
        self._ops_seq = 0
        self._ops_lock = threading.Lock()
        self.ops_delivered = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Called after new rows were committed: deliver now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def notify_ops(self, event: str, **fields: Any) -> None:
        """Queue an operational event for every webhook (any thread; never blocks)."""
        with self._ops_lock:
            self._ops_seq += 1
            self._ops.append(
                (self._ops_seq, {"type": "ops", "event": event, "ts": self._clock(), **fields}, 0)
            )
        self._wake.set()

    def deliver_ops(self) -> int:
        """POST queued ops events to every webhook; failed ones are tried again next round."""
        with self._ops_lock:
            batch = list(self._ops)
            self._ops.clear()
        done = 0
        for seq, body, tries in batch:
            ok = True
            for hook in self.hooks.values():
                sent, error = self._send(hook, f"ops-{seq}", body)
                if not sent:
                    ok = False
                    logger.warning("webhook %s: ops event %s failed: %s", hook.url, body.get("event"), error)
            if ok:
                done += 1
                self.ops_delivered += 1
            elif tries + 1 < OPS_ATTEMPTS:
                with self._ops_lock:
                    self._ops.append((seq, body, tries + 1))
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_ops()
                self.deliver_due()
            except Exception:
                logger.exception("webhook delivery round failed")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def deliver_due(self) -> int:
        """POST every due row once. Returns how many were delivered."""
        now = self._clock()
        with self.db.session() as s:
            rows = s.execute(
                select(WebhookOutbox.id, WebhookOutbox.url, WebhookOutbox.attempts, AlertRow.payload)
                .join(AlertRow, AlertRow.id == WebhookOutbox.alert_id)
                .where(WebhookOutbox.delivered_ts.is_(None), WebhookOutbox.next_try_ts <= now)
                .order_by(WebhookOutbox.next_try_ts, WebhookOutbox.id)
                .limit(50)
            ).all()
        done = 0
        for row_id, url, attempts, payload in rows:
            if self._stop.is_set():
                break
            hook = self.hooks.get(url)
            if hook is None or attempts >= hook.max_attempts:
                continue  # a receiver no longer configured, or given up: left for the operator
            ok, error = self._post(hook, row_id, payload)
            done += ok
            self._record(row_id, hook, ok, error)
        return done

    def _post(self, hook: WebhookConfig, row_id: int, payload: dict[str, Any]) -> tuple[bool, str]:
        return self._send(hook, str(row_id), {"type": "alert", "delivery": row_id, "alert": payload})

    def _send(self, hook: WebhookConfig, delivery: str, message: dict[str, Any]) -> tuple[bool, str]:
        body = json.dumps(message, ensure_ascii=False, sort_keys=True).encode("utf-8")
        ts = f"{self._clock():.0f}"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "livewatch-webhook",
            "X-Livewatch-Timestamp": ts,
            "X-Livewatch-Delivery": delivery,
        }
        key = hook.key()
        if key:
            headers["X-Livewatch-Signature"] = sign(key, ts, body)
        try:
            resp = self._client.post(hook.url, content=body, headers=headers, timeout=hook.timeout_s)
        except httpx.HTTPError as e:
            return False, f"{type(e).__name__}: {e}"
        if 200 <= resp.status_code < 300:
            return True, ""
        return False, f"HTTP {resp.status_code}: {resp.text[:200]}"

    def _record(self, row_id: int, hook: WebhookConfig, ok: bool, error: str) -> None:
        now = self._clock()

        def apply(session: Session) -> None:
            row = session.get(WebhookOutbox, row_id)
            if row is None:
                return
            row.attempts += 1
            if ok:
                row.delivered_ts = now
                row.last_error = None
            else:
                row.last_error = error
                row.next_try_ts = now + retry_delay(row.attempts, hook.backoff_initial_s, hook.backoff_max_s)

        if ok:
            self.delivered += 1
        else:
            self.failed += 1
            logger.warning("webhook %s: delivery %s failed: %s", hook.url, row_id, error)
        self._write(apply)

    def _write_direct(self, fn: Callable[[Session], None]) -> None:
        with self.db.session() as s, s.begin():
            fn(s)
