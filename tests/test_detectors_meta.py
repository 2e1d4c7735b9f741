"""Every detector class: a config model that forbids unknown fields, and a phrase table that holds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from asr.types import Utterance
from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.engine import RulesDetector
from detectors.price import PriceDetector
from detectors.screen import ScreenTextDetector
from detectors.semantic import SemanticDetector
from detectors.visual import VisualFrameDetector

# the pipeline builds these where it wires them (no registry); a new detector class joins this list
DETECTORS: dict[str, type[Detector]] = {
    c.type: c for c in (RulesDetector, PriceDetector, ScreenTextDetector, VisualFrameDetector, SemanticDetector)
}
REGISTRY = DETECTORS


def test_detector_types_are_unique_and_named() -> None:
    assert sorted(DETECTORS) == ["ocr", "price", "rules", "semantic", "visual"]


@pytest.mark.parametrize("type_", sorted(REGISTRY))
def test_every_detector_has_a_config_model_and_a_phrase_table(type_: str) -> None:
    cls = REGISTRY[type_]
    assert issubclass(cls.config_model, BaseModel)
    assert cls.config_model.model_config.get("extra") == "forbid", (
        f"{type_}: config must forbid unknown fields"
    )
    table = cls.phrase_table()
    assert isinstance(table, PhraseTable)
    if table.is_exempt:
        assert table.exempt_reason and not table.should_flag
    else:
        assert table.should_flag and table.should_not_flag, f"{type_}: a text detector needs both lists"


@pytest.mark.parametrize("type_", sorted(t for t, c in REGISTRY.items() if not c.phrase_table().is_exempt))
def test_text_detectors_honour_their_phrase_tables(type_: str) -> None:
    cls = REGISTRY[type_]
    table = cls.phrase_table()
    detector = cls()  # type: ignore[call-arg]
    for i, phrase in enumerate(table.should_flag):
        ctx = DetectionContext(utterance=Utterance(i, 0.0, 3.0, phrase))
        assert list(detector.detect(ctx)), f"{type_} should flag {phrase!r}"
    for i, phrase in enumerate(table.should_not_flag):
        ctx = DetectionContext(utterance=Utterance(i, 0.0, 3.0, phrase))
        got = list(detector.detect(ctx))
        assert not got, f"{type_} should not flag {phrase!r}: {[d.rule_id for d in got]}"


def test_rules_detector_reads_site_layers_and_ignores_frames(tmp_path: Any) -> None:
    from detectors.config import RulesDetectorConfig
    from detectors.engine import RulesDetector

    (tmp_path / "o.yaml").write_text(
        "pack: site\noverrides:\n  disable: [false_claim.a1.unique]\n", encoding="utf-8"
    )
    det = RulesDetector(RulesDetectorConfig(dirs=[tmp_path], hot_reload=False))
    got = {d.rule_id for d in det.detect(DetectionContext(utterance=Utterance(0, 0, 1, "史上最强没有之一")))}
    assert "false_claim.a1.superlative" in got and "false_claim.a1.unique" not in got
    assert list(det.detect(DetectionContext(frame=object(), frame_s=1.0))) == []
