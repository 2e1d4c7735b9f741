"""ScreenTextReader: change gating and caption tracking, with a fake OCR engine on generated frames.

The fake engine "detects" solid rectangles of known colours (stickers) and "reads" a crop as the text
of its dominant colour, counting every call, so the tests can say exactly how much reading the gate let
through. The real RapidOCR engine is exercised in test_video_screen_ocr.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from asr.types import Utterance
from detectors.base import DetectionContext
from detectors.screen import ScreenTextDetector, ScreenTextReader, TextBox, normalize_caption
from detectors.types import Detection
from detectors.video_config import ScreenTextConfig
from ingest.types import Frame

BG = (79, 54, 47)
CARD = (128, 192, 224)
RED = (0, 0, 200)
GREEN = (0, 160, 0)
BLUE = (200, 60, 0)
W, H = 640, 360
CAPTION = (150, 282, 340, 44)  # x, y, w, h: a caption bar near the bottom
TOPLEFT = (16, 16, 80, 30)


class ColorOcr:
    """Finds solid rectangles of the colours in `texts`; reads a crop as its dominant colour's text."""

    def __init__(self, texts: dict[tuple[int, int, int], tuple[str, float]]) -> None:
        self.texts = texts
        self.detect_calls = 0
        self.detect_rows = 0
        self.recognized: list[str] = []

    def detect(self, image: np.ndarray) -> list[TextBox]:
        self.detect_calls += 1
        self.detect_rows += image.shape[0]
        boxes = []
        for color in self.texts:
            mask = np.all(image == np.array(color, np.uint8), axis=2).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for i in range(1, n):
                x, y, w, h, area = (int(v) for v in stats[i])
                if area >= 50:
                    quad = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
                    boxes.append(TextBox(quad, 0.9))
        return boxes

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        out = []
        for c in crops:
            vals, counts = np.unique(c.reshape(-1, 3), axis=0, return_counts=True)
            color = tuple(int(v) for v in vals[counts.argmax()])
            text, score = self.texts.get(color, ("", 0.0))  # type: ignore[arg-type]
            self.recognized.append(text)
            out.append((text, score))
        return out


def scene(
    t: float,
    stickers: Sequence[tuple[tuple[int, int, int], tuple[int, int, int, int]]] = (),
    card_x: int | None = None,
) -> Frame:
    img = np.empty((H, W, 3), np.uint8)
    img[:] = BG
    if card_x is not None:  # a product card (no text) that moves between samples
        cv2.rectangle(img, (card_x, 90), (card_x + 160, 190), CARD, -1)
    for color, (x, y, w, h) in stickers:
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, -1)
    return Frame(t_s=t, image=img)


def run(
    reader: ScreenTextReader, frames: Sequence[Frame]
) -> tuple[list[Utterance], list[tuple[float, Utterance]]]:
    """All utterances (fed + flushed) and, for the fed ones, the frame time they came out at."""
    emitted: list[tuple[float, Utterance]] = []
    for f in frames:
        emitted.extend((f.t_s, u) for u in reader.feed(f))
    flushed = reader.flush()
    return [u for _, u in emitted] + flushed, emitted


TEXTS = {
    RED: ("全网最低价 限时秒杀", 0.98),
    GREEN: ("满199减20 包邮", 0.97),
    BLUE: ("直播间", 0.99),
}


def test_a_caption_on_screen_for_a_while_is_one_utterance_read_once() -> None:
    ocr = ColorOcr(TEXTS)
    reader = ScreenTextReader(ScreenTextConfig(), ocr)
    frames = [scene(t, [(RED, CAPTION)] if 8 <= t <= 20 else []) for t in range(0, 32, 2)]
    utts, _ = run(reader, frames)

    assert [(u.text, u.start_s, u.end_s, u.source) for u in utts] == [
        ("全网最低价 限时秒杀", 8, 20, "screen")
    ]
    assert ocr.recognized == ["全网最低价 限时秒杀"]
    # Read: the first frame, the caption's appearance and its disappearance; the rest skipped.
    assert reader.stats.frames_sampled == 16
    assert reader.stats.frames_read == 3
    assert reader.stats.boxes_recognized == 1
    assert utts[0].meta["box"] == [150, 282, 490, 326]
    assert utts[0].meta["samples"] == 7


def test_a_moving_product_card_is_never_read_and_the_caption_stays_one() -> None:
    ocr = ColorOcr(TEXTS)
    reader = ScreenTextReader(ScreenTextConfig(), ocr)
    frames = [
        scene(t, [(RED, CAPTION), (BLUE, TOPLEFT)], card_x=200 + 7 * i) for i, t in enumerate(range(0, 40, 2))
    ]
    utts, _ = run(reader, frames)

    assert sorted(u.text for u in utts) == ["全网最低价 限时秒杀", "直播间"]
    assert all((u.start_s, u.end_s) == (0, 38) for u in utts)
    assert len(ocr.recognized) == 2  # each caption read once, on the first frame
    # Every later frame looked again only at the card's rows, never at the whole frame.
    assert reader.stats.full_frames_read == 1
    assert reader.stats.frames_read == 20
    assert ocr.detect_rows < H + 19 * 0.6 * H


def test_a_hand_passing_over_a_caption_does_not_split_it() -> None:
    ocr = ColorOcr(TEXTS)
    reader = ScreenTextReader(ScreenTextConfig(reappear_gap_s=4.0), ocr)
    frames = []
    for t in range(0, 24, 2):
        f = scene(t, [(RED, CAPTION)])
        if t == 10:  # something covers the middle of the caption for one sample
            cv2.rectangle(f.image, (250, 270), (380, 340), CARD, -1)
        frames.append(f)
    utts, _ = run(reader, frames)

    assert [(u.text, u.start_s, u.end_s) for u in utts] == [("全网最低价 限时秒杀", 0, 22)]
    # Read on the first frame, then the two uncovered pieces at 10 s; at 12 s the whole caption is
    # back and matches its thumbnail, so it is not read again.
    assert ocr.recognized == ["全网最低价 限时秒杀"] * 3
    assert utts[0].meta["box"] == [150, 282, 490, 326]


def test_a_changed_caption_is_a_new_utterance_handed_out_when_the_old_one_is_gone() -> None:
    ocr = ColorOcr(TEXTS)
    reader = ScreenTextReader(ScreenTextConfig(reappear_gap_s=4.0), ocr)
    frames = []
    for t in range(0, 40, 2):
        if 4 <= t <= 10:
            frames.append(scene(t, [(RED, CAPTION)]))
        elif 12 <= t <= 20:
            frames.append(scene(t, [(GREEN, CAPTION)]))
        else:
            frames.append(scene(t))
    utts, emitted = run(reader, frames)

    assert [(u.text, u.start_s, u.end_s) for u in utts] == [
        ("全网最低价 限时秒杀", 4, 10),
        ("满199减20 包邮", 12, 20),
    ]
    # Handed out during feeding (the live monitor needs them before the end), once gone > 4 s.
    assert [(t, u.text) for t, u in emitted] == [(16, "全网最低价 限时秒杀"), (26, "满199减20 包邮")]
    assert [u.index for u in utts] == [0, 1]


def test_open_captions_show_what_is_on_screen_now() -> None:
    reader = ScreenTextReader(ScreenTextConfig(), ColorOcr(TEXTS))
    for t in (0, 2, 4):
        assert reader.feed(scene(t, [(GREEN, CAPTION)])) == []
    (open_,) = reader.open_captions()
    assert (open_.text, open_.start_s, open_.end_s, open_.meta["open"]) == ("满199减20 包邮", 0, 4, True)


def test_readings_are_normalized_like_speech_and_raw_text_is_kept() -> None:
    ocr = ColorOcr({RED: ("原價￥１２００  到手價￥１２０", 0.95)})
    utts, _ = run(ScreenTextReader(ScreenTextConfig(), ocr), [scene(0, [(RED, CAPTION)])])
    assert utts[0].text == "原价¥1200 到手价¥120"
    assert utts[0].raw_text == "原價￥１２００  到手價￥１２０"
    assert normalize_caption("  廠家直供\u3000正品保障 ") == "厂家直供 正品保障"


def test_unsure_short_and_ignored_readings_are_dropped() -> None:
    ocr = ColorOcr({RED: ("全网最低", 0.3), GREEN: ("x", 0.99), BLUE: ("直播間", 0.99)})
    cfg = ScreenTextConfig(min_text_score=0.6, min_chars=2, ignore_texts=("直播间",))
    frame = scene(0, [(RED, CAPTION), (GREEN, (20, 200, 60, 30)), (BLUE, TOPLEFT)])
    utts, _ = run(ScreenTextReader(cfg, ocr), [frame])
    assert utts == []
    assert len(ocr.recognized) == 3


def test_a_resolution_change_restarts_captions() -> None:
    ocr = ColorOcr(TEXTS)
    reader = ScreenTextReader(ScreenTextConfig(), ocr)
    first = [scene(t, [(GREEN, CAPTION)]) for t in (0, 2)]
    small = np.ascontiguousarray(scene(4, [(GREEN, CAPTION)]).image[:, :600])
    out = []
    for f in first:
        out += reader.feed(f)
    out += reader.feed(Frame(4, small))
    assert [(u.start_s, u.end_s) for u in out] == [(0, 2)]
    assert [(u.start_s, u.end_s) for u in reader.flush()] == [(4, 4)]


def test_the_ocr_detector_runs_captions_through_text_rules() -> None:
    seen: list[Utterance] = []

    def rules(u: Utterance) -> list[Detection]:
        seen.append(u)
        return [
            Detection(
                "t.rule",
                "false_claim",
                "A1",
                "high",
                "广告法",
                u.source,
                u.start_s,
                u.end_s,
                "最低价",
                u.text,
            )
        ]

    det = ScreenTextDetector(ScreenTextConfig(), engine=ColorOcr(TEXTS), text_detect=rules)
    found: list[Detection] = []
    for t in range(0, 12, 2):
        img = scene(t, [(RED, CAPTION)] if t < 6 else []).image
        found += det.detect(DetectionContext(frame=img, frame_s=float(t)))
    found += det.flush()
    assert [(d.source, d.start_s, d.end_s) for d in found] == [("screen", 0, 4)]
    assert [u.text for u in det.captions] == ["全网最低价 限时秒杀"] == [u.text for u in seen]
    assert list(det.detect(DetectionContext())) == []
    with pytest.raises(ValueError, match="frame_s"):
        det.detect(DetectionContext(frame=img))
