"""Configuration of alert grouping and evidence."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merge_gap_s: float = Field(
        1.0, ge=0, description="Detections of one category and source closer than this are one alert."
    )
    pre_roll_s: float = Field(10.0, ge=0, description="Seconds of recording kept before the alert's moment.")
    post_roll_s: float = Field(5.0, ge=0, description="Seconds of recording kept after the alert's moment.")
    context_before_s: float = Field(
        10.0, ge=0, description="Transcript before the moment shown as the alert's context."
    )
    context_after_s: float = Field(5.0, ge=0, description="Transcript after the moment shown as context.")
    snapshot: bool = Field(True, description="Save a snapshot frame (video sources only).")
