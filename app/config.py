"""The root config: a typed tree that documents itself, loaded from YAML, validated at the edge.

Order of precedence for the data directory: --data-dir, then $LIVEWATCH_DATA_DIR, then `data_dir` in
the config file, then ./livewatch-data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alerts.config import AlertsConfig
from app.bus_config import BusSection
from asr.config import AsrConfig
from detectors.config import SemanticConfig
from detectors.video_config import VideoConfig
from review.config import ReviewConfig

__all__ = ["ConfigError", "EvidenceSection", "RootConfig", "RulesSection", "VideoSection", "load_config"]


class ConfigError(Exception):
    """A config file that cannot be used; the message names file, line and field."""


class RulesSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_defaults: bool = Field(True, description="Load the shipped rule packs (configs/rules) first.")
    dirs: list[Path] = Field(
        default_factory=list,
        description="Site rule-pack directories layered over the shipped ones (overrides by rule id).",
    )
    reload_interval_s: float = Field(2.0, gt=0, description="How often a monitor checks packs for changes.")
    reload_timeout_s: float = Field(
        30.0, gt=0, description="A reload taking longer is refused; the rule set in force keeps running."
    )
    line_budget_ms: float = Field(
        1000.0,
        ge=0,
        description="Most wall time matching one line may take (normal lines take a few ms); past it "
        "the remaining rules are skipped for that line, logged and counted (0 = no budget). Checked "
        "between rules: slow regexes are refused at load instead.",
    )


class VideoSection(VideoConfig):
    enabled: bool = Field(True, description="Analyse frames (on-screen text, visual) when media has video.")


class EvidenceSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verify_interval_s: float = Field(
        3600.0,
        ge=0,
        description="How often the live monitor and the review app (each on its own thread) re-hash "
        "every evidence file against its manifest and store the result (ok / missing / changed, shown in "
        "the queue, the alert page, `livewatch status` and /metrics); 0 = off (`livewatch evidence "
        "verify-store` runs one pass by hand).",
    )


class RootConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = Field(None, description="Where the database, recordings and evidence live.")
    db_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default SQLite in the data directory (postgresql+psycopg://... works).",
    )
    asr: AsrConfig = Field(default_factory=AsrConfig, description="Speech recognition.")
    rules: RulesSection = Field(default_factory=RulesSection, description="Rule packs.")
    semantic: SemanticConfig = Field(
        default_factory=SemanticConfig,
        description="The learned semantic stage behind the rules (e5 embeddings + a trained head).",
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert grouping and evidence.")
    price_config: Path | None = Field(
        None, description="Price-check config (thresholds, rule ids, laws); default configs/price.yaml."
    )
    video: VideoSection = Field(default_factory=VideoSection, description="Frame analysis.")
    review: ReviewConfig = Field(
        default_factory=ReviewConfig, description="Review web app: users, tokens, sessions."
    )
    evidence: EvidenceSection = Field(
        default_factory=EvidenceSection, description="Evidence store: the background verification pass."
    )
    bus: BusSection | None = Field(
        None,
        description="NATS JetStream bus (nats://HOST:4222): stages may then run as their own processes "
        "(`livewatch worker analyze`); without it everything runs in one process.",
    )

    def resolved_data_dir(self, override: Path | None = None) -> Path:
        if override is not None:
            return override
        env = os.environ.get("LIVEWATCH_DATA_DIR")
        if env:
            return Path(env)
        return self.data_dir or Path("livewatch-data")

    def rule_dirs(self) -> list[Path]:
        from detectors.config import DEFAULT_RULES_DIR

        return ([DEFAULT_RULES_DIR] if self.rules.include_defaults else []) + list(self.rules.dirs)

    def asr_signature(self) -> str:
        """Settings that change a transcript; a stored transcript is reused only when they match."""
        keep = self.asr.model_dump(mode="json", exclude={"cpu_threads", "cache_dir", "device"})
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    def video_signature(self) -> str:
        return hashlib.sha256(
            json.dumps(self.video.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]


def load_config(path: Path | None) -> RootConfig:
    if path is None:
        return RootConfig()
    from app.yamlconf import load_yaml_model

    return load_yaml_model(path, RootConfig, ConfigError)


def dump_json(cfg: RootConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
