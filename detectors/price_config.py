"""Configuration of the price checks: thresholds, rule ids, severities and law references.

Loaded from `configs/price.yaml` (or a site copy) into pydantic models with `extra="forbid"`, so a
typo in a key is an error, and every error names the file, the line and the field. The models'
defaults equal the shipped YAML, so a missing file means the shipped behaviour.

Pure data; safe to share between threads once loaded (models are never mutated after validation).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectors.yamlsafe import YamlLoadError, load_file

__all__ = [
    "DEFAULT_PRICE_CONFIG",
    "PriceConfig",
    "PriceConfigError",
    "PriceRule",
    "load_price_config",
]

DEFAULT_PRICE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "price.yaml"

Severity = Literal["low", "medium", "high", "critical"]

LAW_PRICE_14_4 = "价格法 第14条(四)"
LAW_PRICE_14_3 = "价格法 第14条(三)"
LAW_MARKING_19_3 = "明码标价和禁止价格欺诈规定 第19条(三)"
LAW_MARKING_19_4 = "明码标价和禁止价格欺诈规定 第19条(四)"
LAW_PROMO_BASE = "规范促销行为暂行规定 第21条"


class PriceConfigError(Exception):
    """A price config that cannot be used; the message names file, line and field."""


class PriceRule(BaseModel):
    """What every price check carries into its detections."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Stable rule id recorded on every detection and alert.")
    enabled: bool = Field(True, description="Switch the check off without deleting its settings.")
    code: str = Field(
        "B2", description="Finer alert code (DOMAIN.md): B1 rise news, B2 fake reference, B3 bait."
    )
    severity: Severity = Field("medium", description="Severity of the detections this check raises.")
    law: str = Field(description="Law reference shown to the reviewer.")
    description: str = Field("", description="One line for reviewers: what this check means.")


class ImplausibleDiscount(PriceRule):
    id: str = Field("price.implausible_discount", description=PriceRule.model_fields["id"].description)
    law: str = Field(
        f"{LAW_PRICE_14_4}; {LAW_MARKING_19_3}", description=PriceRule.model_fields["law"].description
    )
    max_off_ratio: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Alert when the claimed saving exceeds this share of the reference (0.8 = >80% off).",
    )
    require_reference: bool = Field(
        False, description="Only judge discounts stated against a reference price (a bare 一折 is ignored)."
    )


class UnsupportedReference(PriceRule):
    id: str = Field("price.unsupported_reference", description=PriceRule.model_fields["id"].description)
    severity: Severity = Field("low", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_PROMO_BASE}; {LAW_MARKING_19_3}", description=PriceRule.model_fields["law"].description
    )
    kinds: list[str] = Field(
        default_factory=lambda: [
            "原价",
            "划线价",
            "专柜价",
            "市场价",
            "日常价",
            "官方价",
            "别家价",
            "吊牌价",
            "零售价",
        ],
        description="Reference kinds that need a basis when used to advertise a cut.",
    )
    min_off_ratio: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Only comparisons claiming at least this saving are flagged (0.3 = 30% off).",
    )
    flag_inconsistent: bool = Field(
        True,
        description="Also flag a comparison whose reference is not above the current price (often a misheard "
        "number; a reviewer should listen).",
    )


class HistoryRule(PriceRule):
    window_days: float = Field(7.0, gt=0, description="How far back the stream's earlier claims are read.")
    tolerance: float = Field(
        0.02, ge=0, lt=1, description="Relative slack before two prices count as different (0.02 = 2%)."
    )
    max_evidence: int = Field(
        5, ge=1, description="At most this many earlier claims are attached as evidence."
    )


class RecentLow(HistoryRule):
    id: str = Field(
        "price.history.reference_above_recent_low", description=PriceRule.model_fields["id"].description
    )
    severity: Severity = Field("high", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_PROMO_BASE}; {LAW_MARKING_19_3}; {LAW_PRICE_14_4}",
        description=PriceRule.model_fields["law"].description,
    )
    kinds: list[str] = Field(
        default_factory=lambda: ["原价", "划线价", "日常价", "官方价", "吊牌价", "零售价"],
        description="Reference kinds that claim the seller's own earlier price (others name another channel).",
    )


class RaiseThenCut(HistoryRule):
    id: str = Field(
        "price.history.first_raise_then_cut", description=PriceRule.model_fields["id"].description
    )
    severity: Severity = Field("high", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_PROMO_BASE}; {LAW_MARKING_19_3}", description=PriceRule.model_fields["law"].description
    )
    window_days: float = Field(30.0, gt=0, description=HistoryRule.model_fields["window_days"].description)
    only_kinds: list[str] = Field(
        default_factory=lambda: ["只要", "秒杀价", "到手价", "直播间价", "活动价", "现价"],
        description="Current-price kinds that count as the stream's own earlier selling price.",
    )
    kinds: list[str] = Field(
        default_factory=lambda: ["原价", "划线价", "日常价", "官方价", "吊牌价", "零售价"],
        description="Reference kinds checked (the seller's own 'usual' price).",
    )


class KnownPrice(HistoryRule):
    id: str = Field("price.reference_above_known_price", description=PriceRule.model_fields["id"].description)
    severity: Severity = Field("medium", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_MARKING_19_3}; {LAW_PRICE_14_4}", description=PriceRule.model_fields["law"].description
    )
    window_days: float = Field(30.0, gt=0, description="Imported prices younger than this are compared.")
    tolerance: float = Field(0.05, ge=0, lt=1, description=HistoryRule.model_fields["tolerance"].description)


class PressureRepeated(HistoryRule):
    id: str = Field("price.pressure_repeated", description=PriceRule.model_fields["id"].description)
    code: str = Field("B3", description=PriceRule.model_fields["code"].description)
    severity: Severity = Field("medium", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_MARKING_19_4}; {LAW_PRICE_14_4}", description=PriceRule.model_fields["law"].description
    )
    tags: list[str] = Field(
        default_factory=lambda: ["最后一天", "涨价", "恢复原价", "仅剩"],
        description="Pressure tags that must not repeat on different days.",
    )
    min_days: int = Field(
        2, ge=2, description="Alert when a tag was said on at least this many calendar days."
    )
    match_product: bool = Field(
        False, description="Require the same product (pressure is usually about a sale)."
    )


class FakeRiseNews(HistoryRule):
    id: str = Field("price.history.fake_rise_news", description=PriceRule.model_fields["id"].description)
    code: str = Field("B1", description=PriceRule.model_fields["code"].description)
    severity: Severity = Field("high", description=PriceRule.model_fields["severity"].description)
    law: str = Field(
        f"{LAW_PRICE_14_3}; {LAW_MARKING_19_4}", description=PriceRule.model_fields["law"].description
    )
    window_days: float = Field(14.0, gt=0, description=HistoryRule.model_fields["window_days"].description)
    min_elapsed_s: float = Field(
        43200.0,
        ge=0,
        description="A rise announced less than this long ago has not had its chance to happen yet.",
    )
    price_near_s: float = Field(
        3600.0,
        ge=0,
        description="A price stated this close to the announcement is the price it said would rise.",
    )


class CrossMismatch(PriceRule):
    id: str = Field(
        "price.cross.speech_screen_mismatch", description=PriceRule.model_fields["id"].description
    )
    code: str = Field("B3", description=PriceRule.model_fields["code"].description)
    law: str = Field(f"{LAW_MARKING_19_4}", description=PriceRule.model_fields["law"].description)
    window_s: float = Field(
        5.0, ge=0, description="Speech and caption count as the same moment within this slack."
    )
    tolerance: float = Field(0.02, ge=0, lt=1, description="Relative price difference tolerated.")


class PriceRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    implausible_discount: ImplausibleDiscount = Field(
        default_factory=ImplausibleDiscount, description="A saving beyond a plausible share of the reference."
    )
    unsupported_reference: UnsupportedReference = Field(
        default_factory=UnsupportedReference,
        description="A reference price used for a big cut with no basis given.",
    )
    reference_above_recent_low: RecentLow = Field(
        default_factory=RecentLow,
        description="A reference above the lowest price the stream stated in the prior days (7-day baseline).",
    )
    first_raise_then_cut: RaiseThenCut = Field(
        default_factory=RaiseThenCut,
        description="先涨后降: a reference above a price the stream sold at before.",
    )
    reference_above_known_price: KnownPrice = Field(
        default_factory=KnownPrice, description="A reference above an imported known price of the product."
    )
    pressure_repeated: PressureRepeated = Field(
        default_factory=PressureRepeated,
        description="The same 'last day'/'rises tomorrow' pressure on several days.",
    )
    fake_rise_news: FakeRiseNews = Field(
        default_factory=FakeRiseNews, description="An announced price rise that history shows did not happen."
    )
    cross_mismatch: CrossMismatch = Field(
        default_factory=CrossMismatch, description="Spoken and on-screen prices of the same moment disagree."
    )


class ProductMatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        80.0,
        ge=0,
        le=100,
        description="Two product names match at this pinyin similarity (0..100; ASR mishears names).",
    )
    unnamed: Literal["never", "same_price", "any"] = Field(
        "same_price",
        description="When a claim names no product: never compare it; compare it with claims that share one of "
        "its prices (same_price, the usual sign of the same product); or compare it with all (any).",
    )


class PriceConfig(BaseModel):
    """Root of configs/price.yaml."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(
        "Asia/Shanghai", description="Zone whose calendar days 'today'/'tomorrow' refer to."
    )
    min_gap_s: float = Field(
        3600.0, ge=0, description="History checks ignore claims younger than this (the same sale) ..."
    )
    exclude_same_broadcast: bool = Field(True, description="... and claims from the same broadcast.")
    product: ProductMatching = Field(
        default_factory=ProductMatching, description="How claims are tied to products."
    )
    rules: PriceRules = Field(
        default_factory=PriceRules, description="The checks, each with its own settings."
    )

    def version(self) -> str:
        """Content hash of the effective config (recorded with detections)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node along a pydantic error location."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load_price_config(path: Path | None = None) -> PriceConfig:
    """Load and validate; `None` loads the shipped file (or the defaults when it is absent)."""
    if path is None:
        if not DEFAULT_PRICE_CONFIG.exists():
            return PriceConfig()
        path = DEFAULT_PRICE_CONFIG
    try:
        data, root = load_file(path)  # limits: aliases, depth, size (detectors/yamlsafe.py)
    except OSError as e:
        raise PriceConfigError(f"{path}: cannot read: {e.strerror}") from None
    except YamlLoadError as e:
        raise PriceConfigError(str(e)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PriceConfigError(f"{path}:1: expected a mapping at the top level")
    try:
        return PriceConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        raise PriceConfigError(f"{path}:{_line_of(root, loc)}: {field}: {first['msg']}") from None
