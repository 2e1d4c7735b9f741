"""Detector output types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
