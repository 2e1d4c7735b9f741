"""Configuration of the detectors stage (pydantic, extra fields rejected)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_RULES_DIR", "RulesDetectorConfig"]

DEFAULT_RULES_DIR = Path(__file__).resolve().parents[1] / "configs" / "rules"


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
