"""Utterances → detections → alerts for a whole broadcast (scan, replay): `alerts.analyzer` fed at once.

Pure with respect to storage except for the price history reads done by `PriceScan`; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.analyzer import analyze_all
from alerts.config import AlertsConfig
from alerts.types import Alert
from app.price_scan import PriceScan
from asr.types import Utterance
from detectors.price import PriceAnalysis
from detectors.types import Detection, RuleSet

__all__ = ["Analysis", "analyze_broadcast"]


@dataclass(frozen=True, slots=True)
class Analysis:
    detections: tuple[Detection, ...]
    alerts: tuple[Alert, ...]
    price: PriceAnalysis | None


def analyze_broadcast(
    speech: Sequence[Utterance],
    screen: Sequence[Utterance],
    visual: Sequence[Detection],
    *,
    rules: RuleSet,
    price: PriceScan | None,
    cfg: AlertsConfig,
    broadcast_id: str,
    stream_id: str | None,
    started_ts: float | None,
) -> Analysis:
    """Run the rule packs over every utterance, the price checks over the broadcast, and group: the
    broadcast analyzer (alerts/analyzer.py) fed everything at once, then closed."""
    price_analysis = None
    extra: list[Detection] = []
    if price is not None:
        price_analysis = price.analyze(
            list(speech), list(screen), stream_id=stream_id, started_ts=started_ts, broadcast_id=broadcast_id
        )
        extra.extend(price_analysis.detections)
    extra.extend(visual)
    detections, alerts = analyze_all(
        [*speech, *screen], rules=rules, cfg=cfg, broadcast_id=broadcast_id, started_ts=started_ts, extra=extra
    )
    return Analysis(detections, tuple(alerts), price_analysis)
