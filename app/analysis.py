"""Utterances → detections → alerts: the one analysis path shared by scan, replay and the live monitor.

Pure with respect to storage except for the price history reads done by `PriceScan`; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.config import AlertsConfig
from alerts.grouping import context_text, group_detections, make_alert
from alerts.types import Alert
from app.price_scan import PriceScan
from asr.types import Utterance
from detectors.price import PriceAnalysis
from detectors.types import Detection


class RuleSet(Protocol):
    """What analysis needs of a loaded rule set (`detectors.engine.RuleEngine`)."""

    version: str

    def detect(self, utt: Utterance) -> list[Detection]: ...


__all__ = ["Analysis", "analyze_broadcast", "build_alerts"]


@dataclass(frozen=True, slots=True)
class Analysis:
    detections: tuple[Detection, ...]
    alerts: tuple[Alert, ...]
    price: PriceAnalysis | None


def build_alerts(
    detections: Sequence[Detection],
    utterances: Sequence[Utterance],
    *,
    cfg: AlertsConfig,
    broadcast_id: str,
    rules_version: str,
    started_ts: float | None,
) -> list[Alert]:
    """Group detections into alerts, each with the transcript (of its own source) around it as context."""
    by_source: dict[str, list[Utterance]] = {}
    for u in sorted(utterances, key=lambda u: (u.start_s, u.source)):
        by_source.setdefault(u.source, []).append(u)
    alerts = []
    for g in group_detections(detections, cfg.merge_gap_s):
        pool = by_source.get(g[0].source) or by_source.get("speech") or []
        ctx = context_text(
            pool,
            min(d.start_s for d in g),
            max(d.end_s for d in g),
            cfg.context_before_s,
            cfg.context_after_s,
        )
        alerts.append(
            make_alert(
                g, broadcast_id=broadcast_id, rules_version=rules_version, context=ctx, started_ts=started_ts
            )
        )
    return alerts


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
    """Run the rule packs over every utterance, the price checks over the broadcast, and group."""
    detections: list[Detection] = [d for u in [*speech, *screen] for d in rules.detect(u)]
    price_analysis = None
    if price is not None:
        price_analysis = price.analyze(
            list(speech), list(screen), stream_id=stream_id, started_ts=started_ts, broadcast_id=broadcast_id
        )
        detections.extend(price_analysis.detections)
    detections.extend(visual)
    alerts = build_alerts(
        detections,
        [*speech, *screen],
        cfg=cfg,
        broadcast_id=broadcast_id,
        rules_version=rules.version,
        started_ts=started_ts,
    )
    return Analysis(tuple(detections), tuple(alerts), price_analysis)
