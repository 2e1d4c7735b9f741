"""The real RapidOCR engine on the corpus video: captions, times, reading cost, rules on captions."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from rapidfuzz import fuzz

from asr.types import Utterance
from detectors.screen import RapidOcrEngine, ScreenTextReader
from detectors.video_config import ScreenTextConfig
from ingest.frames import sample_frames


def compact(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in ("L", "N"))


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine(ScreenTextConfig())


def read(
    video: Path, engine: RapidOcrEngine, interval_s: float = 2.0
) -> tuple[list[Utterance], ScreenTextReader]:
    reader = ScreenTextReader(ScreenTextConfig(), engine)
    utts: list[Utterance] = []
    for f in sample_frames(video, interval_s):
        utts += reader.feed(f)
    return utts + reader.flush(), reader


def test_real_ocr_reads_a_price_board_once(corpus: Path, engine: RapidOcrEngine) -> None:
    reader = ScreenTextReader(ScreenTextConfig(), engine)
    utts: list[Utterance] = []
    for f in sample_frames(corpus / "broadcast_0.mp4", 2.0, offset_s=0.0):
        if 44.0 <= f.t_s <= 70.0:
            utts += reader.feed(f)
    utts += reader.flush()
    board = [u for u in utts if "到手价" in u.text]
    assert len(board) == 1
    (u,) = board
    assert compact(u.text) == "原价1200到手价120"
    assert "¥1200" in u.text and u.source == "screen"
    assert (u.start_s, u.end_s) == (50.0, 62.0)
    x1, y1, x2, y2 = u.meta["box"]  # type: ignore[misc]
    assert 120 < x1 < x2 < 520 and 270 < y1 < y2 < 340
    assert engine.device == "cpu"
    assert reader.stats.boxes_recognized <= 4  # the watermark, the board (twice at most as it fades)


@pytest.mark.slow
def test_every_caption_of_broadcast_0_is_read_on_time_and_cheaply(
    corpus: Path, engine: RapidOcrEngine
) -> None:
    truth = json.loads((corpus / "broadcast_0.json").read_text(encoding="utf-8"))
    utts, reader = read(corpus / "broadcast_0.mp4", engine)
    for ov in truth["overlays"]:
        found = [u for u in utts if fuzz.ratio(compact(u.text), compact(ov["text"])) >= 90]
        assert len(found) == 1, (ov, [u.text for u in utts])
        (u,) = found
        assert ov["start_s"] <= u.start_s <= ov["start_s"] + 2.0, (ov, u)
        assert ov["end_s"] - 2.0 <= u.end_s <= ov["end_s"] + 2.0, (ov, u)
    # Besides the five captions, only the room's 直播间 watermark, on screen throughout.
    others = [
        u
        for u in utts
        if all(fuzz.ratio(compact(u.text), compact(o["text"])) < 90 for o in truth["overlays"])
    ]
    assert [(u.text, u.start_s, u.end_s) for u in others] == [("直播间", 0.0, 124.0)]

    st = reader.stats
    assert st.frames_sampled == 63
    assert st.frames_read <= 20  # appearances, disappearances and the card's small movements
    assert st.boxes_recognized <= 15
    assert st.cpu_s / truth["duration_s"] <= 0.1  # core-seconds per stream-second, model loading included


@pytest.mark.slow
def test_captions_through_rules_and_price_checks_score_like_the_labels(
    corpus: Path, engine: RapidOcrEngine
) -> None:
    from detectors.config import DEFAULT_RULES_DIR
    from detectors.engine import RuleSet
    from detectors.price import PriceChecker, analyze_utterances

    truth = json.loads((corpus / "broadcast_0.json").read_text(encoding="utf-8"))
    utts, _ = read(corpus / "broadcast_0.mp4", engine)
    rules = RuleSet.load([DEFAULT_RULES_DIR])
    detections = [d for u in utts for d in rules.detect(u)]
    detections += analyze_utterances(
        [], utts, PriceChecker(), stream_id=None, started_ts=None, broadcast_id=None
    ).detections
    assert detections and all(d.source == "screen" for d in detections)
    for ov in truth["overlays"]:
        near = {
            d.category for d in detections if d.start_s <= ov["end_s"] + 2 and d.end_s >= ov["start_s"] - 2
        }
        labels = {c for c in ov["labels"] if c != "clean"}
        # Every label is found; a clean caption stays quiet. (An extra category on a labelled caption
        # is the rule packs' call, e.g. 全网最低价 as both false_claim and price_fraud; score.py counts it.)
        assert labels <= near if labels else near == set(), (ov["text"], near)
        for d in detections:
            if d.category in labels and d.start_s <= ov["end_s"] + 2 and d.end_s >= ov["start_s"] - 2:
                assert abs(d.start_s - ov["start_s"]) <= 2.0, (ov["text"], d)
