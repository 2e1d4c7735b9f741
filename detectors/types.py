"""Detector output types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from asr.types import Utterance

SEVERITIES = ("low", "medium", "high", "critical")
CATEGORIES = (
    "false_claim",
    "price_fraud",
    "fake_sales",
    "vulgar",
    "defamation",
    "counterfeit",
    "food_safety",
    "pyramid_selling",
    "consumer_rights",
    "improper_prize",
    "prohibited_goods",
    "orientation",
)


@dataclass(frozen=True, slots=True)
class PriceClaim:
    """A structured price statement: '原价九百九十九, 今天只要一百九十九'."""

    source: str  # speech | screen
    start_s: float
    end_s: float
    text: str
    reference_price: float | None = None
    reference_kind: str | None = None  # 原价, 划线价, 专柜价, 市场价, 日常价, 官方价, 别家价 ...
    current_price: float | None = None
    current_kind: str | None = None  # 现价, 到手价, 直播间价, 只要, 秒杀价 ...
    discount: float | None = None  # fraction paid: 一折 -> 0.1, 半价 -> 0.5
    reduction: float | None = None  # 减/立减 N (currency)
    conditions: tuple[str, ...] = ()
    product: str | None = None
    pressure: tuple[str, ...] = ()  # time/stock/price-rise pressure: 最后一天, 涨价, 恢复原价, 仅剩
    basis: str | None = None  # words that state the reference price's basis (近七天最低价, 以官网为准)


@dataclass(frozen=True, slots=True)
class Detection:
    """One rule hit, located in time on the broadcast's clock."""

    rule_id: str
    category: str
    code: str
    severity: str
    law: str
    source: str  # speech | screen | visual
    start_s: float
    end_s: float
    matched: str  # the text (or label) that matched
    text: str  # the whole utterance/caption
    score: float = 100.0  # 0..100
    mode: str = "exact"  # exact | pinyin | fuzzy | regex | price | visual | cross
    utterance_index: int | None = None
    claim: PriceClaim | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class RuleSet(Protocol):
    """What analysis needs of a loaded rule set (`detectors.engine.RuleSet`, `RuleEngine`, the semantic
    wrapper): its config version and its detections on one line. The one rule-set protocol."""

    @property
    def version(self) -> str: ...

    def detect(self, utt: Utterance) -> list[Detection]: ...


class RuleHolder(Protocol):
    """A rule set that may be reloaded while running (`detectors.engine.RuleHolder`)."""

    def maybe_reload(self) -> RuleSet: ...


@dataclass(frozen=True, slots=True)
class VideoBatch:
    """What one recorded file (or the end of a broadcast) gave the video reader: captions and visual
    detections (video worker → analysis)."""

    broadcast_id: str
    stream_id: str
    captions: tuple[Utterance, ...]
    visual: tuple[Detection, ...]
    done_s: float  # frames before this are read
    final: bool  # the broadcast is over and every caption has been handed out
    resume_s: float = 0.0  # a restarted reader starts here: done_s, or the oldest caption still on screen
    # captions read for the first time and still on screen: judged now, so a caption that stays up for
    # minutes (a banner) alerts when it appears, not when it goes; not stored (the caption is, once it
    # leaves the screen, and its detections then join the same alert)
    opening: tuple[Utterance, ...] = ()
