"""Visual vulgarity: exposure found in sampled frames by NudeNet's detector.

`VisualDetector.feed(frame)` runs a `FrameModel` (NudeNet by default) on each sampled frame, keeps the
boxes whose label is configured as exposure and whose score reaches that label's threshold, and
raises one `Detection` (category vulgar, source visual) when `persistence` consecutive samples show
exposure, so one bad frame (a misdetection, a flash) does not page a reviewer. The episode then stays
open, without further detections, until `clear_after` consecutive clean samples; exposure after that
is a new alert. The detection's `start_s` is the first sample of the run, `end_s` the sample that
confirmed it; `details["boxes"]` holds that first sample's boxes as [x1, y1, x2, y2, label, score]
(what the evidence writer draws on the snapshot) and `details["frame_t_s"]` its time. The frame with
the boxes drawn is kept in `snapshots[frame_t_s]` (the last few only) for callers that save it.

Frames that barely differ from the last one analysed reuse its result (`skip_unchanged`): a static
scene costs one model call, not one per sample.

The model is a protocol (`FrameModel.detect(image) -> list[Box]`) so tests and other detectors can be
injected; `NudeNetModel` runs the ONNX model bundled in the `nudenet` package through onnxruntime,
CUDA when present, CPU otherwise, with the configured threads.

Concurrency: a detector holds one stream's state and is used from one thread. A `NudeNetModel` may
be shared between detectors; onnxruntime sessions accept concurrent `run` calls.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.screen import frame_of
from detectors.types import Detection
from detectors.video_config import VisualConfig
from ingest.types import Frame

__all__ = [
    "Box",
    "FrameModel",
    "NudeNetModel",
    "VisualDetector",
    "VisualFrameDetector",
    "VisualStats",
    "draw_boxes",
]

logger = logging.getLogger(__name__)

_KEEP_SNAPSHOTS = 16


@dataclass(frozen=True, slots=True)
class Box:
    """One labelled box in frame pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float

    def as_list(self) -> list[Any]:
        """[x1, y1, x2, y2, label, score]: the JSON form in `Detection.details['boxes']`."""
        return [
            round(self.x1),
            round(self.y1),
            round(self.x2),
            round(self.y2),
            self.label,
            round(self.score, 4),
        ]


class FrameModel(Protocol):
    def detect(self, image: np.ndarray) -> list[Box]:
        """Boxes found in a BGR uint8 image."""
        ...


class NudeNetModel:
    """NudeNet 3.4's bundled detector (YOLOv8n, 320 px input) on our own onnxruntime session.

    nudenet's `NudeDetector` ignores its `providers` argument and takes onnxruntime's default threads,
    so the session is built here (providers and threads from config) and handed to a `NudeDetector`
    instance, whose pre- and post-processing are kept as they are.
    """

    INPUT_SIZE = 320

    def __init__(self, cfg: VisualConfig) -> None:
        import os

        import nudenet
        import onnxruntime as ort
        from nudenet import NudeDetector

        from detectors.onnx_runtime import providers_for, session_options

        path = os.path.join(os.path.dirname(nudenet.__file__), f"{self.INPUT_SIZE}n.onnx")
        providers = providers_for(cfg.onnx)
        session = ort.InferenceSession(path, sess_options=session_options(cfg.onnx), providers=providers)
        detector = NudeDetector.__new__(NudeDetector)
        detector.onnx_session = session
        detector.input_width = detector.input_height = self.INPUT_SIZE
        detector.input_name = session.get_inputs()[0].name
        self._detector = detector
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        logger.info("NudeNet ready on %s (%s)", self.device, path)

    def detect(self, image: np.ndarray) -> list[Box]:
        found = self._detector.detect(image)
        boxes = []
        for d in found:
            x, y, w, h = (float(v) for v in d["box"])
            boxes.append(Box(x, y, x + w, y + h, str(d["class"]), float(d["score"])))
        return boxes


def draw_boxes(image: np.ndarray, boxes: Sequence[Box | Sequence[Any]]) -> np.ndarray:
    """A copy of `image` with each box outlined in red and labelled 'LABEL 0.87'."""
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    for b in boxes:
        if isinstance(b, Box):
            x1, y1, x2, y2, label, score = b.x1, b.y1, b.x2, b.y2, b.label, b.score
        else:
            x1, y1, x2, y2 = (float(v) for v in b[:4])
            label = str(b[4]) if len(b) > 4 else ""
            score = float(b[5]) if len(b) > 5 else 0.0
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, (0, 0, 255), thick)
        if label:
            text = f"{label} {score:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            ty = p1[1] - 4 if p1[1] - th - 6 >= 0 else p1[1] + th + 4
            cv2.rectangle(out, (p1[0], ty - th - 2), (p1[0] + tw + 2, ty + base), (0, 0, 255), -1)
            cv2.putText(
                out, text, (p1[0] + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
            )
    return out


@dataclass(slots=True)
class VisualStats:
    frames_sampled: int = 0
    frames_analysed: int = 0  # model calls; the rest reused the previous result
    positive_samples: int = 0
    detections: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames_sampled": self.frames_sampled,
            "frames_analysed": self.frames_analysed,
            "positive_samples": self.positive_samples,
            "detections": self.detections,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
        }


class VisualDetector:
    """Frames in, visual vulgarity detections out; see the module docstring."""

    def __init__(self, cfg: VisualConfig | None = None, model: FrameModel | None = None) -> None:
        self.cfg = cfg or VisualConfig()
        self._model = model
        self._thumb: np.ndarray | None = None
        self._last_boxes: list[Box] = []
        self._run: list[tuple[Frame, list[Box]]] = []  # consecutive positive samples, not yet confirmed
        self._alerted = False  # an episode is open and has been reported
        self._clean = 0
        self.snapshots: OrderedDict[float, np.ndarray] = OrderedDict()
        self.stats = VisualStats()

    @property
    def model(self) -> FrameModel:
        if self._model is None:
            self._model = NudeNetModel(self.cfg)
        return self._model

    def feed(self, frame: Frame) -> list[Detection]:
        """Analyse one sampled frame; returns a detection when exposure has just been confirmed."""
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            return self._feed(frame)
        finally:
            self.stats.wall_s += time.perf_counter() - wall0
            self.stats.cpu_s += time.thread_time() - cpu0

    def flush(self) -> list[Detection]:
        """End of media: drop an unconfirmed run (it never reached `persistence`) and reset."""
        if self._run and not self._alerted:
            logger.debug(
                "visual run of %d sample(s) at %.2fs ended unconfirmed", len(self._run), self._run[0][0].t_s
            )
        self._run = []
        self._alerted = False
        self._clean = 0
        self._thumb = None
        self._last_boxes = []
        return []

    def hits(self, boxes: Sequence[Box]) -> list[Box]:
        """The boxes that count as exposure under this config."""
        classes = self.cfg.classes
        return [b for b in boxes if b.label in classes and b.score >= classes[b.label]]

    def _feed(self, frame: Frame) -> list[Detection]:
        cfg = self.cfg
        self.stats.frames_sampled += 1
        thumb = cv2.resize(
            cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA
        )
        thumb = thumb.astype(np.float32)
        unchanged = (
            cfg.skip_unchanged
            and self._thumb is not None
            and float(np.mean(np.abs(thumb - self._thumb))) < cfg.unchanged_diff
        )
        if unchanged:
            boxes = self._last_boxes
        else:
            boxes = list(self.model.detect(frame.image))
            self.stats.frames_analysed += 1
            self._thumb = thumb
            self._last_boxes = boxes
        hits = self.hits(boxes)
        if not hits:
            self._clean += 1
            self._run = []
            if self._alerted and self._clean >= cfg.clear_after:
                self._alerted = False
            return []
        self.stats.positive_samples += 1
        self._clean = 0
        if self._alerted:
            return []
        self._run.append((frame, hits))
        if len(self._run) < cfg.persistence:
            return []
        first_frame, first_hits = self._run[0]
        self._run = []
        self._alerted = True
        self.stats.detections += 1
        return [self._detection(first_frame, first_hits, frame.t_s, n_samples=cfg.persistence)]

    def _detection(self, first: Frame, hits: list[Box], end_s: float, *, n_samples: int) -> Detection:
        cfg = self.cfg
        top = max(hits, key=lambda b: b.score)
        labels = sorted({b.label for b in hits})
        snapshot = draw_boxes(first.image, hits)
        self.snapshots[first.t_s] = snapshot
        while len(self.snapshots) > _KEEP_SNAPSHOTS:
            self.snapshots.popitem(last=False)
        logger.info(
            "visual exposure %s (%.2f) confirmed at %.2fs, first seen %.2fs",
            top.label,
            top.score,
            end_s,
            first.t_s,
        )
        return Detection(
            rule_id=cfg.rule_id,
            category="vulgar",
            code=cfg.code,
            severity=cfg.severity,
            law=cfg.law,
            source="visual",
            start_s=first.t_s,
            end_s=end_s,
            matched=top.label,
            text="画面暴露: "
            + ", ".join(f"{b.label} {b.score:.2f}" for b in sorted(hits, key=lambda b: -b.score)),
            score=round(top.score * 100, 1),
            mode="visual",
            details={
                "boxes": [b.as_list() for b in hits],
                "labels": labels,
                "frame_t_s": first.t_s,
                "samples": n_samples,
            },
        )


class VisualFrameDetector(Detector[VisualConfig]):
    """Detector type ``visual``: a `VisualDetector` behind the registry's `detect(context)` interface."""

    type = "visual"

    config_model = VisualConfig

    def __init__(self, config: VisualConfig | None = None, *, model: FrameModel | None = None) -> None:
        super().__init__(config or VisualConfig())
        self.detector = VisualDetector(self.config, model)

    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        frame = frame_of(context)
        if frame is None or not self.config.enabled:
            return []
        return self.detector.feed(frame)

    def flush(self) -> list[Detection]:
        return self.detector.flush()

    @classmethod
    def phrase_table(cls) -> PhraseTable:
        return PhraseTable(exempt_reason="looks at frames, not text; tested on generated and injected frames")
