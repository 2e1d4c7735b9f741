"""Configuration of the video detectors: frame sampling, on-screen text (OCR) and visual vulgarity.

Plain pydantic models (extra="forbid", every field described); the root config mounts `VideoConfig`
and YAML loading reports errors by file, line and field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_VISUAL_CLASSES",
    "FrameSamplingConfig",
    "OnnxConfig",
    "ScreenTextConfig",
    "VideoConfig",
    "VisualConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnnxConfig(_Strict):
    """How an ONNX model runs: device and CPU threads."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: onnxruntime's CUDA provider when this onnxruntime build has it, else CPU. "
        "cuda: require CUDA (fail at start if missing). cpu: never use a GPU.",
    )
    intra_op_threads: int = Field(
        1,
        ge=0,
        description="Threads one operator may use on CPU (0 = onnxruntime's default, all cores). Kept low "
        "so OCR and frame models do not fight the ASR worker for cores.",
    )
    inter_op_threads: int = Field(
        1, ge=0, description="Threads running independent operators in parallel (0 = onnxruntime's default)."
    )


class FrameSamplingConfig(_Strict):
    """Which frames the video detectors see."""

    interval_s: float = Field(
        2.0, ge=0.5, le=60.0, description="Seconds of broadcast time between two sampled frames (0.5 to 60)."
    )
    backend: Literal["auto", "av", "opencv"] = Field(
        "auto",
        description="Decoder: PyAV (auto) or OpenCV's VideoCapture. Both give the same frames and times.",
    )
    skip_nonref: bool = Field(
        True,
        description="PyAV only: do not decode frames no other frame references (B-frames). Halves decoding "
        "cost; a sample may then land a few frames after its grid point (its time stays exact).",
    )


class ScreenTextConfig(_Strict):
    """On-screen text: RapidOCR on sampled frames, gated by change detection."""

    enabled: bool = Field(
        True, description="Read on-screen text (captions, price boards, banners, stickers)."
    )
    onnx: OnnxConfig = Field(default_factory=OnnxConfig, description="Device and threads for the OCR models.")
    det_limit_side_len: int = Field(
        960,
        ge=160,
        le=4096,
        description="Frames (or regions) whose longer side exceeds this are shrunk to it before text "
        "detection; smaller ones are read at their own size.",
    )
    det_box_thresh: float = Field(
        0.5, gt=0, lt=1, description="Text detector: minimum mean score of a text box to keep it."
    )
    min_text_score: float = Field(
        0.6, gt=0, le=1, description="Recognizer: lines read with a lower confidence are dropped."
    )
    min_chars: int = Field(
        2, ge=1, description="Lines with fewer letters or digits than this (after normalization) are dropped."
    )
    min_box_height_px: int = Field(
        10, ge=1, description="Text boxes lower than this (in frame pixels) are ignored: too small to read."
    )
    gate_scale: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Change detection compares frames shrunk by this factor (cheap, and blind to compression "
        "noise).",
    )
    cell_px: int = Field(
        32,
        ge=8,
        le=256,
        description="Change detection grid: the frame is cut into cells this many frame pixels square; only "
        "cells that changed are read again.",
    )
    cell_diff_threshold: float = Field(
        6.0,
        gt=0,
        description="A cell changed when the mean absolute difference (0-255, the largest of the three colour "
        "channels) from the image last read there exceeds this.",
    )
    band_margin_px: int = Field(
        12,
        ge=0,
        description="Changed cells are read as full-width horizontal bands (text runs horizontally), grown "
        "by this margin above and below.",
    )
    full_frame_fraction: float = Field(
        0.6,
        gt=0,
        le=1,
        description="When bands cover more than this fraction of the frame (a scene cut), the whole frame "
        "is read at once.",
    )
    same_box_iou: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A text box overlapping a caption on screen by at least this IoU may be that caption.",
    )
    same_box_diff: float = Field(
        12.0,
        gt=0,
        description="...and is that caption, without running the recognizer again, when its 24x96 grayscale "
        "thumbnail differs from the caption's by less than this (mean absolute difference, 0-255, in the "
        "most changed of 12 vertical strips, so one changed digit counts).",
    )
    same_text_ratio: float = Field(
        85.0,
        ge=0,
        le=100,
        description="Two readings are the same caption when their texts match at least this well "
        "(rapidfuzz ratio, 0-100): OCR may misread a character on one frame.",
    )
    reappear_gap_s: float = Field(
        4.0,
        ge=0,
        description="A caption that vanishes and returns with the same text within this many seconds (a "
        "hand passed over it) stays one caption; a caption is handed out this long after it vanished.",
    )
    ignore_texts: tuple[str, ...] = Field(
        (), description="Normalized texts never handed out (the room's own watermark, for instance)."
    )


#: NudeNet classes that count as exposure by default, with the minimum score for each.
DEFAULT_VISUAL_CLASSES: dict[str, float] = {
    "FEMALE_BREAST_EXPOSED": 0.5,
    "FEMALE_GENITALIA_EXPOSED": 0.45,
    "MALE_GENITALIA_EXPOSED": 0.45,
    "BUTTOCKS_EXPOSED": 0.55,
    "ANUS_EXPOSED": 0.45,
}

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)


class VisualConfig(_Strict):
    """Visual vulgarity: NudeNet's detector on sampled frames."""

    enabled: bool = Field(True, description="Look for exposure in sampled frames.")
    onnx: OnnxConfig = Field(
        default_factory=OnnxConfig, description="Device and threads for the NudeNet model."
    )
    classes: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_VISUAL_CLASSES),
        description="NudeNet labels that count as exposure, each with the minimum score (0-1) a box needs.",
    )
    persistence: int = Field(
        2,
        ge=1,
        description="Consecutive sampled frames with exposure before an alert, so one bad frame (a "
        "misdetection, a flash) does not page a reviewer.",
    )
    clear_after: int = Field(
        2,
        ge=1,
        description="Consecutive clean samples that end an episode; exposure after that is a new alert.",
    )
    skip_unchanged: bool = Field(
        True, description="Reuse the last result when a frame barely differs from the last one analysed."
    )
    unchanged_diff: float = Field(
        2.0,
        gt=0,
        description="Mean absolute grayscale difference (0-255, on a 64x36 thumbnail) below which a frame "
        "counts as unchanged.",
    )
    rule_id: str = Field("visual.exposure", description="Rule id recorded on visual detections.")
    code: str = Field("C1v", description="Finer alert code recorded on visual detections.")
    severity: Literal["low", "medium", "high", "critical"] = Field(
        "high", description="Severity of a visual exposure detection."
    )
    law: str = Field(
        "广告法 第9条(七); 网络直播营销管理办法 第18条",
        description="Law reference recorded on visual detections.",
    )

    @field_validator("classes")
    @classmethod
    def _known_labels(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(NUDENET_LABELS))
        if unknown:
            raise ValueError(f"unknown NudeNet labels {unknown}; known: {', '.join(NUDENET_LABELS)}")
        bad = {k: s for k, s in v.items() if not 0.0 < s <= 1.0}
        if bad:
            raise ValueError(f"scores must be in (0, 1]: {bad}")
        return v


class VideoConfig(_Strict):
    """Everything the scan and the live monitor need to analyse frames."""

    frames: FrameSamplingConfig = Field(default_factory=FrameSamplingConfig, description="Frame sampling.")
    screen: ScreenTextConfig = Field(default_factory=ScreenTextConfig, description="On-screen text (OCR).")
    visual: VisualConfig = Field(default_factory=VisualConfig, description="Visual vulgarity (NudeNet).")
