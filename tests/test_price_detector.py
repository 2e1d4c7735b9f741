"""The price detector in the registry: its phrase table, and the context it reads."""

from __future__ import annotations

from datetime import UTC, datetime

from asr.fake import utterance_from_text
from detectors.base import DetectionContext
from detectors.price import HistoricClaim, KnownPrice, PriceDetector, extract_from_utterance

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()


def _ctx(text: str, **kw: object) -> DetectionContext:
    return DetectionContext(utterance=utterance_from_text(0.0, 4.0, text), **kw)  # type: ignore[arg-type]


def test_phrase_table() -> None:
    det = PriceDetector()
    table = PriceDetector.phrase_table()
    assert table.should_flag and table.should_not_flag and not table.is_exempt
    for text in table.should_flag:
        assert {d.category for d in det.detect(_ctx(text))} == {"price_fraud"}, text
    for text in table.should_not_flag:
        assert list(det.detect(_ctx(text))) == [], text


class ListHistory:
    """An in-memory `PriceHistory` (the store's is tested in test_price_checks)."""

    def __init__(self, claims: list[HistoricClaim]) -> None:
        self.claims = claims
        self.calls: list[tuple[str, float, float]] = []

    def claims_for(
        self, stream_id: str, since_ts: float, until_ts: float, product: str | None = None
    ) -> list[HistoricClaim]:
        self.calls.append((stream_id, since_ts, until_ts))
        return [h for h in self.claims if h.stream_id == stream_id and since_ts <= h.ts < until_ts]

    def reference_prices(self, product: str | None, since_ts: float) -> list[KnownPrice]:
        return []


def test_context_stream_and_start_time_enable_history() -> None:
    (earlier,) = extract_from_utterance(utterance_from_text(1.0, 3.0, "这个精华液今天只要一百九十九"))
    hist = ListHistory([HistoricClaim(earlier, T0 - 86400, "old", stream_id="room1", claim_id=7)])
    det = PriceDetector(history=hist)
    text = "这个精华液原价九百九十九元,今天只要一百九十九元"
    assert "price.history.reference_above_recent_low" not in {d.rule_id for d in det.detect(_ctx(text))}
    dets = det.detect(_ctx(text, stream_id="room1", meta={"started_ts": T0, "broadcast_id": "new"}))
    (d,) = [x for x in dets if x.rule_id == "price.history.reference_above_recent_low"]
    assert d.details["contradicts"][0]["claim_id"] == 7
    assert hist.calls and hist.calls[-1][0] == "room1" and hist.calls[-1][2] <= T0
