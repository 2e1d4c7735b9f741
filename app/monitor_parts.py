"""The monitor's parts that are not wiring: the per-stream state, counters, and how the rule holders
and the live transcriber are built from the config."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from app.config import RootConfig
from app.monitor_config import LiveAsrSection, MonitorConfig, StreamEntry, live_asr_config
from asr.build import LiveDecoding, build_transcriber
from asr.config import AsrConfig
from asr.types import Transcriber
from detectors.types import RuleHolder


@dataclass(slots=True)
class StreamState:
    """One configured stream as the monitor sees it (read by the status under the monitor's lock); its
    recorder, state and current broadcast are the ingest worker's (`IngestWorker.snapshot`)."""

    entry: StreamEntry
    holder: RuleHolder
    pre_roll_s: float
    post_roll_s: float
    broadcast_started_ts: float | None = None  # of its current broadcast, refined by the live clock
    alerts: int = 0
    lagging: bool = False
    last_lag_warn: float = 0.0
    max_lag_s: float = 0.0


@dataclass(slots=True)
class MonitorStats:
    alerts: int = 0
    started: float = field(default_factory=time.monotonic)


def default_holder(dirs: list[Path], cfg: RootConfig) -> RuleHolder:
    """A reloading rule holder over `dirs`, with the semantic stage behind it when enabled (the monitor's
    and the bus analyze worker's)."""
    from detectors.engine import RuleHolder
    from detectors.semantic import holder_with_semantic

    r = cfg.rules
    holder = RuleHolder(
        dirs,
        min_interval_s=r.reload_interval_s,
        reload_timeout_s=r.reload_timeout_s,
        line_budget_s=r.line_budget_ms / 1000 or None,
    )
    # the learned stage behind the rules when enabled: its detections and its hash in the version
    return holder_with_semantic(holder, cfg.semantic)  # type: ignore[no-any-return]


def live_transcriber(cfg: MonitorConfig) -> Transcriber:
    """The monitor's one Whisper model: `asr` with the live overrides, decoding bounded per pass."""
    return live_transcriber_for(cfg.asr, cfg.live_asr)


def live_transcriber_for(asr: AsrConfig, la: LiveAsrSection) -> Transcriber:
    """A live transcriber from the `asr` and `live_asr` sections (the monitor's, the bus ASR worker's)."""
    live = LiveDecoding(
        trim_encoder=la.trim_encoder,
        encoder_margin_s=la.encoder_margin_s,
        encoder_min_s=la.encoder_min_s,
        max_new_tokens=la.max_new_tokens,
        no_repeat_ngram_size=la.no_repeat_ngram_size,
    )
    return build_transcriber(live_asr_config(asr, la), live=live)
