"""The monitor config: the root config plus live streams, live ASR, webhooks and retention.

A monitor file is a root config (`asr`, `rules`, `alerts`, `video`, `data_dir`, ...) with more
sections. `defaults:` holds per-stream settings that every entry of `streams:` inherits; an entry
overrides any of them (nested sections such as `reconnect` and `retention` merge key by key). Both
are validated as they are written, so an error names the file, line and field a user must edit;
`MonitorConfig.streams_resolved()` gives the merged settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts.webhook import WebhookConfig
from app.config import ConfigError, RootConfig
from asr.config import AsrConfig
from asr.streaming import StreamingOptions
from ingest.config import IngestConfig
from store.retention import RetentionConfig

__all__ = [
    "LeaseSection",
    "LiveAsrSection",
    "MonitorConfig",
    "StreamEntry",
    "StreamSettings",
    "load_monitor_config",
]


class StreamSettings(IngestConfig):
    """Per-stream settings: ingest, evidence rolls, rule packs, retention."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Monitor this stream (false keeps it in the file but idle).")
    pre_roll_s: float | None = Field(
        None, ge=0, description="Evidence seconds before an alert's moment (null = alerts.pre_roll_s)."
    )
    post_roll_s: float | None = Field(
        None, ge=0, description="Evidence seconds after an alert's moment (null = alerts.post_roll_s)."
    )
    rule_dirs: list[Path] = Field(
        default_factory=list, description="Rule packs for this stream, layered over the global rules (by id)."
    )
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="Recording retention.")


class StreamEntry(StreamSettings):
    """One live room."""

    id: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Stable id (folder name, alerts)."
    )
    url: str = Field(
        ..., min_length=1, description="Room URL, hls://..., rtmp://..., http(s) FLV/TS, or a file."
    )
    name: str = Field("", description="Display name (default: the id).")


class LiveAsrSection(BaseModel):
    """Sliding-window live ASR (see asr/streaming.py)."""

    model_config = ConfigDict(extra="forbid")

    max_window_s: float = Field(15.0, ge=4, le=30, description="Longest audio decoded in one pass.")
    min_step_s: float = Field(
        1.0,
        gt=0,
        description="New audio a stream needs before its next pass (smaller: lower latency, more CPU).",
    )
    pause_s: float = Field(
        0.6,
        gt=0,
        description="Silence after a word that ends an utterance (the scan's VAD splits at 0.5 s, words at 0.7 s).",
    )
    max_utterance_s: float = Field(
        12.0, gt=0, description="Cut an utterance after this long even without a pause."
    )
    prompt_chars: int = Field(100, ge=0, description="Committed text before the window passed as the prompt.")
    lag_warn_s: float = Field(
        10.0, gt=0, description="Warn loudly when a stream's ASR falls this far behind the live edge."
    )
    temperatures: tuple[float, ...] = Field(
        (0.0,),
        min_length=1,
        description=(
            "Decoding temperatures for live passes (replaces asr.temperatures). One: a fallback re-decode of a "
            "half-heard window costs seconds, and the next pass decodes that audio again anyway."
        ),
    )
    beam_size: int | None = Field(
        1,
        ge=1,
        description=(
            "Beam width for live passes (null = asr.beam_size). Greedy: on 2 CPU cores a pass costs about "
            "half of beam 5's (the encoder's ~1 s is fixed), which halves alert latency at equal recall on "
            "the corpus (bench/bench_live.md)."
        ),
    )
    min_speech_ms: int = Field(
        500,
        ge=0,
        description=(
            "VAD: speech shorter than this is not decoded in live passes (replaces "
            "asr.vad.min_speech_duration_ms). Short bursts of room music at a window's edge are what Whisper "
            "hallucinates on; a whole file gives it context, a 5 s window does not."
        ),
    )
    max_new_tokens: int = Field(
        160,
        ge=16,
        description=(
            "Stop decoding a pass after this many tokens. A window that ends on a burst of noise can send "
            "Whisper into a loop ('新的新的新的...') of up to 448 tokens, seconds of CPU for text the "
            "hallucination filter drops anyway; 15 s of fast speech needs about 120."
        ),
    )
    no_repeat_ngram_size: int = Field(
        0,
        ge=0,
        description="Forbid the decoder to repeat any token n-gram of this size within a pass (0 = off).",
    )
    trim_encoder: bool = Field(
        True,
        description=(
            "Encode only the audio a pass holds (plus encoder_margin_s) instead of Whisper's 30 s of padding "
            "(asr/encoder.py). On 2 CPU cores this cuts the mean live pass from 1.9 s to 0.4 s on the corpus "
            "at equal or lower CER (bench/bench_live_asr.md); false restores faster-whisper's behaviour."
        ),
    )
    encoder_margin_s: float = Field(
        3.0,
        ge=0,
        le=10,
        description="Padding kept after the audio when trim_encoder is on (Whisper expects to see the audio end).",
    )
    encoder_min_s: float = Field(
        10.0,
        ge=1,
        le=30,
        description="Shortest encoder context when trim_encoder is on.",
    )

    def options(self) -> StreamingOptions:
        return StreamingOptions(
            max_window_s=self.max_window_s,
            min_step_s=self.min_step_s,
            pause_s=self.pause_s,
            max_utterance_s=min(self.max_utterance_s, self.max_window_s - 1.0),
            prompt_chars=self.prompt_chars,
        )


class LeaseSection(BaseModel):
    """This monitor's lease on its own work when several monitors share one database (store/leases.py)."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float = Field(
        30.0,
        gt=0,
        description="A lease not renewed for this long has expired: its owner is taken for dead.",
    )
    heartbeat_s: float = Field(5.0, gt=0, description="How often the monitor renews its lease.")
    adopt_expired: bool = Field(
        False,
        description=(
            "Adopt the unfinished broadcasts of monitors whose lease expired (dead, or stopped and not back): "
            "close them, and finish their transcription, analysis and evidence where their recordings are "
            "reachable from here. False: leave them to their owner's next start."
        ),
    )

    @model_validator(mode="after")
    def _beat_within_ttl(self) -> LeaseSection:
        if self.heartbeat_s >= self.ttl_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s}) must be shorter than ttl_s ({self.ttl_s})")
        return self


class MonitorConfig(RootConfig):
    """`livewatch monitor --config FILE`."""

    model_config = ConfigDict(extra="forbid")

    live_asr: LiveAsrSection = Field(default_factory=LiveAsrSection, description="Live speech recognition.")
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Receivers of alert notifications."
    )
    disk_quota_gb: float | None = Field(
        None,
        gt=0,
        description="Keep all streams' unpinned recordings under this many GiB (oldest deleted first).",
    )
    retention_interval_s: float = Field(60.0, gt=0, description="How often retention runs.")
    instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$",
        description=(
            "This monitor's id in a database shared by several monitors: the owner of its broadcasts and "
            "of its lease. Default: <hostname>-<8 hex of the absolute data directory>, stable across "
            "restarts of the same monitor."
        ),
    )
    lease: LeaseSection = Field(default_factory=LeaseSection, description="Ownership lease and heartbeat.")
    defaults: StreamSettings = Field(
        default_factory=StreamSettings, description="Settings every stream inherits."
    )
    streams: list[StreamEntry] = Field(..., min_length=1, description="The live rooms to monitor.")

    @field_validator("streams")
    @classmethod
    def _unique_ids(cls, value: list[StreamEntry]) -> list[StreamEntry]:
        seen: set[str] = set()
        for s in value:
            if s.id in seen:
                raise ValueError(f"stream id '{s.id}' is used twice")
            seen.add(s.id)
        return value

    def streams_resolved(self) -> list[StreamEntry]:
        """Each enabled stream with the defaults merged under its own settings."""
        base = self.defaults.model_dump(exclude_unset=True)
        out = []
        for entry in self.streams:
            merged = _deep_merge(base, entry.model_dump(exclude_unset=True))
            resolved = StreamEntry.model_validate(merged)
            if resolved.enabled:
                out.append(resolved)
        return out

    def live_asr_config(self) -> AsrConfig:
        """The `asr` section with the live-pass overrides applied (what the monitor's model decodes with)."""
        return live_asr_config(self.asr, self.live_asr)

    def pre_post_roll(self, stream: StreamSettings) -> tuple[float, float]:
        return (
            self.alerts.pre_roll_s if stream.pre_roll_s is None else stream.pre_roll_s,
            self.alerts.post_roll_s if stream.post_roll_s is None else stream.post_roll_s,
        )


def live_asr_config(asr: AsrConfig, live: LiveAsrSection) -> AsrConfig:
    """`asr` with the live-pass overrides of `live` applied (the monitor's and the bus ASR worker's)."""
    update: dict[str, Any] = {
        "temperatures": tuple(live.temperatures),
        "vad": asr.vad.model_copy(update={"min_speech_duration_ms": live.min_speech_ms}),
    }
    if live.beam_size is not None:
        update["beam_size"] = live.beam_size
    return asr.model_copy(update=update)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_monitor_config(path: Path) -> MonitorConfig:
    from app.yamlconf import load_yaml_model

    return load_yaml_model(path, MonitorConfig, ConfigError)
