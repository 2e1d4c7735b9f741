"""The webhook ops-event queue is bounded (alerts/webhook.py OPS_QUEUE_MAX): a full queue pushes out its
oldest event, counted in the status and logged, never silently; the rest are delivered."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from alerts.webhook import OPS_QUEUE_MAX, WebhookConfig
from app.webhooks import WebhookDelivery
from store.db import Database


def test_a_full_ops_queue_drops_the_oldest_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[dict[str, object]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        got.append(json.loads(request.content))
        return httpx.Response(200)

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    hook = WebhookConfig(url="http://127.0.0.1:9/hook")
    d = WebhookDelivery(db, [hook], transport=httpx.MockTransport(receive))
    for i in range(OPS_QUEUE_MAX + 5):
        d.notify_ops("test_event", n=i)
    st = d.status()
    assert st["ops_queued"] == OPS_QUEUE_MAX and st["ops_dropped"] == 5
    assert sum("webhook ops queue full" in r.getMessage() for r in caplog.records) == 5
    assert d.deliver_ops() == OPS_QUEUE_MAX
    assert [m["n"] for m in got] == list(range(5, OPS_QUEUE_MAX + 5))  # the newest kept, in order
    assert d.status()["ops_queued"] == 0
