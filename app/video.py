"""Frame analysis for a scanned file: one pass of sampled frames feeds the OCR reader and the visual
detector, so each frame is decoded once. Single-threaded; the readers keep per-stream state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asr.types import Utterance
from detectors.screen import ScreenTextReader
from detectors.types import Detection
from detectors.video_config import VideoConfig
from detectors.visual import VisualDetector
from ingest.frames import sample_frames
from ingest.types import MediaInfo

__all__ = ["read_video"]


def read_video(
    path: str | Path,
    info: MediaInfo,
    cfg: VideoConfig,
    progress: Callable[[float], None],
    stats: dict[str, object] | None = None,
) -> tuple[list[Utterance], list[Detection]]:
    """Captions (source 'screen') and visual detections (source 'visual') of one file."""
    reader = ScreenTextReader(cfg.screen) if cfg.screen.enabled else None
    visual = VisualDetector(cfg.visual) if cfg.visual.enabled else None
    captions: list[Utterance] = []
    detections: list[Detection] = []
    for frame in sample_frames(
        path, cfg.frames.interval_s, backend=cfg.frames.backend, skip_nonref=cfg.frames.skip_nonref
    ):
        if reader is not None:
            captions.extend(reader.feed(frame))
        if visual is not None:
            detections.extend(visual.feed(frame))
        progress(min(frame.t_s, info.duration_s))
    if reader is not None:
        captions.extend(reader.flush())
    if visual is not None:
        detections.extend(visual.flush())
    captions.sort(key=lambda u: (u.start_s, u.index))
    if stats is not None:
        if reader is not None:
            stats["screen"] = reader.stats.as_dict()
        if visual is not None:
            stats["visual"] = visual.stats.as_dict()
    return captions, detections
