"""Webhook outbox delivery (alerts/webhook.py) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_helpers import Receiver

from alerts.webhook import WebhookConfig, retry_delay, sign, wants
from app.webhooks import WebhookDelivery, enqueue
from store.db import Database
from store.models import AlertRow, Broadcast, WebhookOutbox


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with d.session() as s, s.begin():
        s.add(Broadcast(id="b1", stream_id="s1", kind="live", source="x", created_ts=0.0))
        s.flush()
        s.add(
            AlertRow(
                id="a1",
                broadcast_id="b1",
                stream_id="s1",
                category="vulgar",
                code="C1",
                rule_id="r",
                severity="high",
                source="speech",
                start_s=1.0,
                end_s=2.0,
                text="t",
                rules_version="v",
                payload={"alert_id": "a1", "category": "vulgar"},
                created_ts=0.0,
            )
        )
    yield d
    d.dispose()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    expected = hmac.new(b"k", b"123.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", "123", b"{}") == f"sha256={expected}"


def test_backoff_doubles_up_to_the_ceiling() -> None:
    assert [retry_delay(n, 2.0, 20.0) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 16.0, 20.0]


def test_filters_by_category_and_severity() -> None:
    hook = WebhookConfig(url="http://x/", categories=["vulgar"], min_severity="high")
    assert wants(hook, "vulgar", "critical") and not wants(hook, "vulgar", "medium")
    assert not wants(hook, "price_fraud", "critical")


def test_signed_delivery_retries_with_backoff_and_survives_a_restart(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_KEY", "s3cret")
    rx = Receiver([500])
    hook = WebhookConfig(url=rx.url, secret_env="HOOK_KEY", backoff_initial_s=30.0)
    with db.session() as s, s.begin():
        assert enqueue(s, "a1", "vulgar", "high", [hook], 1000.0) == 1
    with db.session() as s, s.begin():
        assert enqueue(s, "a1", "vulgar", "high", [hook], 1000.0) == 0  # idempotent
    clock = Clock()
    try:
        first = WebhookDelivery(db, [hook], clock=clock)
        assert first.deliver_due() == 0  # receiver answered 500
        with db.session() as s:
            row = s.query(WebhookOutbox).one()
            assert (row.attempts, row.delivered_ts, row.next_try_ts) == (1, None, 1030.0)
            assert "HTTP 500" in (row.last_error or "")
        clock.t = 1010.0
        assert first.deliver_due() == 0 and len(rx.requests) == 1  # not due yet
        first.stop()

        clock.t = 1031.0
        second = WebhookDelivery(db, [hook], clock=clock)  # a restarted monitor
        assert second.deliver_due() == 1
        assert second.deliver_due() == 0  # delivered once
        second.stop()
    finally:
        rx.close()
    headers, body = rx.requests[-1]
    assert headers["x-livewatch-signature"] == sign(b"s3cret", headers["x-livewatch-timestamp"], body)
    assert headers["x-livewatch-delivery"] == rx.requests[0][0]["x-livewatch-delivery"]
    assert json.loads(body)["alert"]["alert_id"] == "a1"
    with db.session() as s:
        assert s.query(WebhookOutbox).one().delivered_ts == 1031.0


def test_gives_up_after_max_attempts(db: Database) -> None:
    hook = WebhookConfig(url="http://127.0.0.1:9/", max_attempts=2, backoff_initial_s=1.0, timeout_s=1.0)
    with db.session() as s, s.begin():
        enqueue(s, "a1", "vulgar", "high", [hook], 0.0)
    clock = Clock()
    d = WebhookDelivery(db, [hook], clock=clock)
    for _ in range(4):
        d.deliver_due()
        clock.t += 100
    d.stop()
    with db.session() as s:
        row = s.query(WebhookOutbox).one()
        assert row.attempts == 2 and row.delivered_ts is None and row.last_error
