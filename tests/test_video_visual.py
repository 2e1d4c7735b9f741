"""VisualDetector: the real NudeNet model on generated frames (no alert), an injected model for alerts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from detectors.base import DetectionContext
from detectors.video_config import VisualConfig
from detectors.visual import Box, NudeNetModel, VisualDetector, VisualFrameDetector, draw_boxes
from ingest.frames import sample_frames
from ingest.types import Frame

EXPOSED = "FEMALE_BREAST_EXPOSED"


class ScriptedModel:
    """Returns the boxes scripted for each call, in order; counts calls."""

    def __init__(self, script: Sequence[Sequence[Box]]) -> None:
        self.script = list(script)
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Box]:
        boxes = list(self.script[self.calls])
        self.calls += 1
        return boxes


def frames(n: int, step: float = 2.0) -> list[Frame]:
    """Distinct frames (so the unchanged-frame shortcut never applies unless asked)."""
    rng = np.random.default_rng(7)
    return [Frame(i * step, rng.integers(0, 255, (180, 320, 3), dtype=np.uint8), i) for i in range(n)]


def hit(score: float = 0.8, label: str = EXPOSED) -> list[Box]:
    return [Box(40, 30, 120, 110, label, score)]


def feed_all(det: VisualDetector, fs: Sequence[Frame]) -> list[tuple[float, object]]:
    out = []
    for f in fs:
        out += [(f.t_s, d) for d in det.feed(f)]
    out += [(-1.0, d) for d in det.flush()]
    return out


def test_one_bad_frame_does_not_alert() -> None:
    model = ScriptedModel([[], hit(), [], [], hit(), []])
    out = feed_all(VisualDetector(VisualConfig(persistence=2), model), frames(6))
    assert out == []
    assert model.calls == 6


def test_persistent_exposure_alerts_once_with_boxes_and_a_snapshot() -> None:
    model = ScriptedModel([[], hit(0.7), hit(0.9), hit(0.8), hit(0.8), []])
    det = VisualDetector(VisualConfig(persistence=2), model)
    fs = frames(6)
    out = feed_all(det, fs)

    assert len(out) == 1
    t, d = out[0]
    assert t == 4.0  # confirmed on the second consecutive sample
    assert (d.category, d.source, d.code, d.rule_id, d.mode) == (
        "vulgar",
        "visual",
        "C1v",
        "visual.exposure",
        "visual",
    )
    assert (d.start_s, d.end_s) == (2.0, 4.0)
    assert d.details["boxes"] == [[40, 30, 120, 110, EXPOSED, 0.7]]
    assert d.details["frame_t_s"] == 2.0
    assert d.score == 70.0 and d.matched == EXPOSED and d.severity == "high" and "广告法" in d.law
    snap = det.snapshots[2.0]
    assert snap.shape == fs[1].image.shape
    assert tuple(snap[30, 80]) == (0, 0, 255)  # the box's top edge, drawn in red
    assert det.stats.detections == 1 and det.stats.positive_samples == 4


def test_a_new_episode_after_clean_samples_alerts_again_a_flicker_does_not() -> None:
    # + + (alert) - + + (same episode: one clean sample is a flicker) - - (episode over) + + (alert)
    script = [hit(), hit(), [], hit(), hit(), [], [], hit(), hit()]
    out = feed_all(
        VisualDetector(VisualConfig(persistence=2, clear_after=2), ScriptedModel(script)), frames(9)
    )
    assert [(d.start_s, d.end_s) for _, d in out] == [(0.0, 2.0), (14.0, 16.0)]


def test_thresholds_and_classes_come_from_config() -> None:
    script = [
        hit(0.4),  # below the class threshold
        hit(0.95, "FACE_FEMALE"),  # not an exposure class
        hit(0.4),
        hit(0.95, "FACE_FEMALE"),
    ]
    assert feed_all(VisualDetector(VisualConfig(persistence=1), ScriptedModel(script)), frames(4)) == []

    cfg = VisualConfig(persistence=1, classes={EXPOSED: 0.3})
    out = feed_all(VisualDetector(cfg, ScriptedModel([hit(0.4), [], []])), frames(3))
    assert [d.details["boxes"][0][5] for _, d in out] == [0.4]

    with pytest.raises(ValidationError, match="unknown NudeNet labels"):
        VisualConfig(classes={"NAKED": 0.5})
    with pytest.raises(ValidationError):
        VisualConfig(persistance=2)  # type: ignore[call-arg]


def test_unchanged_frames_reuse_the_last_result() -> None:
    image = np.full((180, 320, 3), 90, np.uint8)
    model = ScriptedModel([hit()] * 5)
    det = VisualDetector(VisualConfig(persistence=3), model)
    out = feed_all(det, [Frame(t, image) for t in (0.0, 2.0, 4.0)])
    assert model.calls == 1
    assert [(d.start_s, d.end_s) for _, d in out] == [(0.0, 4.0)]


def test_draw_boxes_leaves_the_frame_alone() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    out = draw_boxes(image, [[10, 20, 60, 80, "BUTTOCKS_EXPOSED", 0.66], Box(100, 10, 150, 50, EXPOSED, 0.9)])
    assert image.max() == 0
    assert tuple(out[80, 30]) == (0, 0, 255) and tuple(out[30, 150]) == (0, 0, 255)
    assert out[50, 35].max() == 0  # inside a box: untouched


def test_the_visual_detector_takes_a_context() -> None:
    det = VisualFrameDetector(VisualConfig(persistence=2), model=ScriptedModel([hit(), hit()]))
    fs = frames(2)
    found = [d for f in fs for d in det.detect(DetectionContext(frame=f.image, frame_s=f.t_s))]
    assert [(d.start_s, d.end_s) for d in found] == [(0.0, 2.0)]
    assert list(det.detect(DetectionContext())) == []


def test_real_nudenet_stays_quiet_on_generated_and_corpus_frames(corpus) -> None:  # type: ignore[no-untyped-def]
    model = NudeNetModel(VisualConfig())
    assert model.device == "cpu"  # this machine has no GPU; CUDA is taken when onnxruntime offers it
    rng = np.random.default_rng(0)
    generated = [
        np.full((360, 640, 3), (150, 180, 230), np.uint8),  # skin-toned flat frame
        rng.integers(0, 255, (360, 640, 3), dtype=np.uint8),  # noise
        np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (360, 1, 3)),  # gradient
    ]
    video = [f.image for f in sample_frames(corpus / "broadcast_0.mp4", 20.0)]
    det = VisualDetector(VisualConfig(persistence=1, skip_unchanged=False), model)
    found = []
    for i, img in enumerate(generated + video):
        boxes = model.detect(img)
        assert det.hits(boxes) == [], boxes
        found += det.feed(Frame(float(i), img))
    assert found == []
    assert det.stats.frames_analysed == len(generated) + len(video) >= 9
