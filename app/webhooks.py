"""Webhook delivery through the outbox table (see alerts/webhook.py for the protocol): `enqueue` adds
outbox rows in the caller's transaction, `WebhookDelivery` is the delivery thread. Here, above the
store, because it reads and writes the store's outbox rows; the rules it applies are alerts/webhook.py's.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from alerts.webhook import OPS_ATTEMPTS, OPS_QUEUE_MAX, WebhookConfig, retry_delay, sign, wants
from store.db import Database
from store.models import AlertRow, WebhookOutbox

__all__ = ["WebhookDelivery", "enqueue"]

logger = logging.getLogger(__name__)

WriteFn = Callable[[Callable[[Session], None]], None]


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
        scope: ColumnElement[bool] | Callable[[], ColumnElement[bool]] | None = None,
    ) -> None:
        self.db = db
        self.hooks = {h.url: h for h in hooks}
        # which alerts' rows this deliverer POSTs (a condition on AlertRow; a monitor sharing its database
        # delivers its own broadcasts' alerts: store.leases.owned_alerts), or a callable giving it anew
        # each round (a bus ingest worker's: the broadcasts it owns change as it takes streams over)
        self._scope = scope
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
        self.ops_dropped = 0  # oldest ops events pushed out of the full queue (alerts/webhook.py)

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
            self._push_op((self._ops_seq, {"type": "ops", "event": event, "ts": self._clock(), **fields}, 0))
        self._wake.set()

    def _push_op(self, item: tuple[int, dict[str, Any], int]) -> None:
        """Queue an ops event (under `_ops_lock`); a full queue pushes out its oldest, counted and logged."""
        if len(self._ops) == self._ops.maxlen:
            self.ops_dropped += 1
            logger.warning(
                "webhook ops queue full (%d events): the oldest, %s, is dropped",
                OPS_QUEUE_MAX,
                self._ops[0][1].get("event"),
            )
        self._ops.append(item)

    def status(self) -> dict[str, int]:
        """Counters for the monitor's status."""
        with self._ops_lock:
            queued = len(self._ops)
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "ops_delivered": self.ops_delivered,
            "ops_queued": queued,
            "ops_dropped": self.ops_dropped,
        }

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
                    self._push_op((seq, body, tries + 1))
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
        scope = self._scope() if callable(self._scope) else self._scope
        with self.db.session() as s:
            rows = s.execute(
                select(WebhookOutbox.id, WebhookOutbox.url, WebhookOutbox.attempts, AlertRow.payload)
                .join(AlertRow, AlertRow.id == WebhookOutbox.alert_id)
                .where(WebhookOutbox.delivered_ts.is_(None), WebhookOutbox.next_try_ts <= now)
                .where(*([] if scope is None else [scope]))
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
