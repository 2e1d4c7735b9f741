"""On-screen text: captions, price boards, banners and stickers read from sampled frames.

`ScreenTextReader.feed(frame)` turns a stream of sampled frames into caption `Utterance`s with
`source="screen"`: one per caption per stay on screen, `start_s` the first sample it was seen on,
`end_s` the last. A caption is handed out once it has left the screen (and not come back within
`reappear_gap_s`), or by `flush()` at the end of the media; `open_captions()` shows those still on
screen for callers that want to act before a caption leaves.

Reading every frame would cost far too much (about 0.15 s of CPU per 640x360 frame), so reading is
gated by change detection:

1. Each frame is shrunk and compared, colour channel by channel and cell by cell (`cell_px` squares) with the
   image *as it was when last read* there (not the previous sample, so a slow fade still adds up).
2. Rows of changed cells become full-width horizontal bands (text runs horizontally, so a band holds
   whole lines), grown to take in any caption on screen they touch. Pixels outside the bands did not
   change, so captions there are still on screen as read: they are extended without any model call.
3. In each band the text detector finds line boxes. A box that sits where a caption was and whose
   thumbnail still looks the same is that caption (no recognizer call): a host or a product card
   moving in front of the text's row costs one detector pass over the band, not a reading.
4. Only new-looking boxes go through the recognizer. Readings are normalized (traditional →
   simplified, full-width → half-width, whitespace collapsed) and matched to captions by text
   similarity, so one misread character does not split a caption in two.

The OCR engine is a protocol (`OcrEngine`); `RapidOcrEngine` runs RapidOCR's bundled PP-OCR models
through onnxruntime (CUDA when present, CPU otherwise, with few threads so it does not fight the ASR
worker). `stats` counts frames sampled, frames read, bands read, boxes detected and recognized, and
the time spent.

Concurrency: a reader holds one stream's state and is used from one thread. The RapidOCR engine may
be shared by readers in the same thread; it is not made thread-safe here.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import cv2
import numpy as np

from asr.types import Utterance
from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.types import Detection
from detectors.video_config import ScreenTextConfig
from ingest.types import Frame

__all__ = [
    "OcrEngine",
    "RapidOcrEngine",
    "ScreenStats",
    "ScreenTextDetector",
    "ScreenTextReader",
    "TextBox",
    "frame_of",
    "normalize_caption",
]

logger = logging.getLogger(__name__)

_THUMB_SIZE = (96, 24)  # (width, height) of the grayscale thumbnail that identifies a text box
_THUMB_STRIPS = 12  # compared strip by strip: 8 px wide, about half a character of a 10-character line


@dataclass(frozen=True, slots=True, eq=False)
class TextBox:
    """A text line found by the detector: its quadrilateral (4 points, x,y) in the image it was run on."""

    quad: np.ndarray  # float32 (4, 2)
    score: float


class OcrEngine(Protocol):
    """What the reader needs from an OCR engine. Images are BGR uint8 arrays."""

    def detect(self, image: np.ndarray) -> list[TextBox]:
        """Text line boxes in `image`."""
        ...

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence (0-1) of each single-line crop, in order."""
        ...


class RapidOcrEngine:
    """RapidOCR (PP-OCR det + rec models bundled in the `rapidocr` package) on onnxruntime."""

    def __init__(self, cfg: ScreenTextConfig) -> None:
        from rapidocr import RapidOCR

        from detectors.onnx_runtime import use_cuda

        cuda = use_cuda(cfg.onnx)
        params: dict[str, Any] = {
            "Global.log_level": "error",  # RapidOCR warns on every frame without text otherwise
            "Global.use_cls": False,  # captions are upright; the angle classifier only costs time
            "Global.text_score": 0.0,  # the reader applies min_text_score itself
            "Det.limit_type": "max",  # shrink big frames, never blow small ones up
            "Det.limit_side_len": cfg.det_limit_side_len,
            "Det.box_thresh": cfg.det_box_thresh,
            "EngineConfig.onnxruntime.intra_op_num_threads": cfg.onnx.intra_op_threads or -1,
            "EngineConfig.onnxruntime.inter_op_num_threads": cfg.onnx.inter_op_threads or -1,
            "EngineConfig.onnxruntime.use_cuda": cuda,
        }
        if cuda:
            params["EngineConfig.onnxruntime.cuda_ep_cfg.cudnn_conv_algo_search"] = "DEFAULT"
        self.device = "cuda" if cuda else "cpu"
        self._ocr = RapidOCR(params=params)
        logger.info(
            "RapidOCR ready on %s (intra-op threads %s)", self.device, cfg.onnx.intra_op_threads or "default"
        )

    def detect(self, image: np.ndarray) -> list[TextBox]:
        out = self._ocr(image, use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(out, "boxes", None)
        scores = getattr(out, "scores", None)
        if boxes is None or scores is None:
            return []
        return [
            TextBox(np.asarray(q, dtype=np.float32).reshape(4, 2), float(s))
            for q, s in zip(boxes, scores, strict=True)
        ]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = []
        for crop in crops:
            out = self._ocr(crop, use_det=False, use_cls=False, use_rec=True)
            txts = getattr(out, "txts", None) or ()
            scores = getattr(out, "scores", None) or ()
            results.append((str(txts[0]), float(scores[0])) if txts and scores else ("", 0.0))
        return results


# --- text normalization --------------------------------------------------------------------------

_FULL_TO_HALF = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FULL_TO_HALF[0x3000] = 0x20  # ideographic space
_FULL_TO_HALF[0xFFE5] = 0xA5  # ￥ → ¥ (outside the full-width ASCII block)


@cache
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def normalize_caption(text: str) -> str:
    """Simplified script, half-width ASCII and ¥, whitespace runs collapsed: the form rules read."""
    if not text:
        return ""
    return " ".join(_t2s().convert(text).translate(_FULL_TO_HALF).split())


def _alnum_count(text: str) -> int:
    return sum(1 for ch in text if unicodedata.category(ch)[0] in ("L", "N"))


def _compact(text: str) -> str:
    return "".join(ch for ch in text.lower() if unicodedata.category(ch)[0] in ("L", "N"))


# --- caption tracking ----------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Track:
    """One caption while it is (or recently was) on screen."""

    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
    thumb: np.ndarray
    text: str
    raw_text: str
    score: float
    first_s: float
    last_s: float
    visible: bool = True
    samples: int = 1  # samples it was seen on
    readings: int = 1  # recognizer calls spent on it

    def to_utterance(self, index: int, *, open_: bool = False) -> Utterance:
        meta: dict[str, object] = {
            "box": list(self.box),
            "score": round(self.score, 4),
            "samples": self.samples,
            "readings": self.readings,
        }
        if open_:
            meta["open"] = True
        return Utterance(
            index=index,
            start_s=self.first_s,
            end_s=self.last_s,
            text=self.text,
            raw_text=self.raw_text,
            source="screen",
            meta=meta,
        )


@dataclass(slots=True)
class ScreenStats:
    """What reading the screen cost. `cpu_s` is this thread's CPU time inside `feed`."""

    frames_sampled: int = 0
    frames_read: int = 0  # frames on which the text detector ran at all
    full_frames_read: int = 0  # ... of which the whole frame was read
    regions_read: int = 0  # bands passed to the text detector
    region_pixels: int = 0
    frame_pixels: int = 0  # pixels of all sampled frames, to compare with region_pixels
    boxes_detected: int = 0
    boxes_recognized: int = 0  # recognizer calls; the rest were matched to captions by thumbnail
    captions: int = 0  # utterances handed out
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames_sampled": self.frames_sampled,
            "frames_read": self.frames_read,
            "full_frames_read": self.full_frames_read,
            "regions_read": self.regions_read,
            "region_pixel_fraction": round(self.region_pixels / self.frame_pixels, 4)
            if self.frame_pixels
            else 0.0,
            "boxes_detected": self.boxes_detected,
            "boxes_recognized": self.boxes_recognized,
            "captions": self.captions,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
        }


def _area(b: tuple[int, int, int, int]) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if not inter:
        return 0.0
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def _thumb(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    crop = gray[y1:y2, x1:x2]
    if crop.size == 0:
        return np.zeros((_THUMB_SIZE[1], _THUMB_SIZE[0]), np.float32)
    return cv2.resize(crop, _THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def _thumb_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest mean absolute difference over vertical strips of two thumbnails.

    Per strip rather than over the whole thumbnail, so that one changed digit on a price board
    (到手价¥120 → ¥129) is a difference, not averaged away by the unchanged rest of the line.
    """
    d = np.abs(a - b)
    strips = d.reshape(d.shape[0], _THUMB_STRIPS, -1).mean(axis=(0, 2))
    return float(strips.max())


def _crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The text line under `quad`, warped upright (as PP-OCR crops it for its recognizer)."""
    q = quad.astype(np.float32)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    crop = cv2.warpPerspective(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if h / w >= 1.5:  # a vertical line: turn it so the recognizer reads it left to right
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def _row_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D boolean array."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, v in enumerate(rows.tolist()):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(rows)))
    return runs


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class ScreenTextReader:
    """Frames in, caption utterances (source 'screen') out; see the module docstring."""

    def __init__(
        self, cfg: ScreenTextConfig | None = None, engine: OcrEngine | None = None, *, index_start: int = 0
    ) -> None:
        self.cfg = cfg or ScreenTextConfig()
        self._engine = engine
        self._tracks: list[_Track] = []
        self._ref: np.ndarray | None = None  # the shrunk frame as it was when last read, per pixel
        self._shape: tuple[int, int] | None = None
        self._next_index = index_start
        self._ignore = {_compact(normalize_caption(t)) for t in self.cfg.ignore_texts}
        self.stats = ScreenStats()

    @property
    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = RapidOcrEngine(self.cfg)
        return self._engine

    # -- public API -------------------------------------------------------------------------------

    def feed(self, frame: Frame) -> list[Utterance]:
        """Read one sampled frame; returns the captions that have left the screen (often none)."""
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            return self._feed(frame)
        finally:
            self.stats.wall_s += time.perf_counter() - wall0
            self.stats.cpu_s += time.thread_time() - cpu0

    def flush(self) -> list[Utterance]:
        """End of media: hand out every caption still tracked and forget the stream's state."""
        out = self._emit(list(self._tracks))
        self._tracks = []
        self._ref = None
        self._shape = None
        return out

    def pending_since(self) -> float | None:
        """When the oldest caption not yet handed out appeared (None: none pending). A reader restarted
        after a crash must start there to hand out those captions whole."""
        return min((t.first_s for t in self._tracks), default=None)

    def open_captions(self) -> list[Utterance]:
        """Captions on screen now, as provisional utterances (meta['open']=True, index -1)."""
        return [t.to_utterance(-1, open_=True) for t in self._tracks if t.visible]

    # -- the work ---------------------------------------------------------------------------------

    def _feed(self, frame: Frame) -> list[Utterance]:
        cfg = self.cfg
        image = frame.image
        t = frame.t_s
        h, w = image.shape[:2]
        self.stats.frames_sampled += 1
        self.stats.frame_pixels += h * w
        out: list[Utterance] = []
        if self._shape != (h, w):
            if self._shape is not None:
                logger.info("frame size changed %s -> %s at %.2fs: captions restart", self._shape, (h, w), t)
                out.extend(self._emit(list(self._tracks)))
                self._tracks = []
            self._shape = (h, w)
            self._ref = None

        small = cv2.resize(image, None, fx=cfg.gate_scale, fy=cfg.gate_scale, interpolation=cv2.INTER_AREA)
        bands = self._changed_bands(small, h, w)

        in_band: set[int] = set()
        if bands:
            self.stats.frames_read += 1
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            in_band = {id(tr) for tr in self._tracks for y0, y1 in bands if tr.box[1] < y1 and tr.box[3] > y0}
            seen = self._read_bands(image, gray, bands, t)
            for tr in self._tracks:
                if id(tr) in in_band and id(tr) not in seen:
                    tr.visible = False  # its pixels changed and it was not found again
            self._commit_ref(small, bands)
        # Pixels outside the bands are as they were when read: captions there are still on screen.
        for tr in self._tracks:
            if tr.visible and id(tr) not in in_band and tr.last_s < t:
                tr.last_s = t
                tr.samples += 1

        gone = [tr for tr in self._tracks if not tr.visible and t - tr.last_s > cfg.reappear_gap_s]
        if gone:
            self._tracks = [tr for tr in self._tracks if tr not in gone]
            out.extend(self._emit(gone))
        return out

    def _changed_bands(self, small: np.ndarray, h: int, w: int) -> list[tuple[int, int]]:
        """Full-width [y0, y1) bands of the frame to read again; [] when nothing changed."""
        cfg = self.cfg
        if self._ref is None or self._ref.shape != small.shape:
            self.stats.full_frames_read += 1
            return [(0, h)]
        # The largest difference over the colour channels: a colour change of equal brightness counts.
        diff = cv2.absdiff(small, self._ref).max(axis=2)
        rows = max(1, round(h / cfg.cell_px))
        cols = max(1, round(w / cfg.cell_px))
        cell_mean = cv2.resize(diff.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
        changed_rows = np.asarray((cell_mean > cfg.cell_diff_threshold).any(axis=1))
        if not changed_rows.any():
            return []
        row_h = h / rows
        spans = [
            (
                max(0, int(a * row_h) - cfg.band_margin_px),
                min(h, int(np.ceil(b * row_h)) + cfg.band_margin_px),
            )
            for a, b in _row_runs(changed_rows)
        ]
        # Grow bands over every caption they touch, so a caption is always read whole.
        while True:
            merged = _merge_spans(spans)
            grown = list(merged)
            for tr in self._tracks:
                _, ty0, _, ty1 = tr.box
                for k, (a, b) in enumerate(grown):
                    if ty0 < b and ty1 > a:
                        grown[k] = (
                            min(a, max(0, ty0 - cfg.band_margin_px)),
                            max(b, min(h, ty1 + cfg.band_margin_px)),
                        )
            grown = _merge_spans(grown)
            if grown == merged:
                break
            spans = grown
        if sum(b - a for a, b in merged) > cfg.full_frame_fraction * h:
            self.stats.full_frames_read += 1
            return [(0, h)]
        return merged

    def _commit_ref(self, small: np.ndarray, bands: list[tuple[int, int]]) -> None:
        if self._ref is None or self._ref.shape != small.shape:
            self._ref = small.copy()
            return
        s = self.cfg.gate_scale
        for y0, y1 in bands:
            a, b = int(y0 * s), int(np.ceil(y1 * s))
            self._ref[a:b] = small[a:b]

    def _detect_band(self, image: np.ndarray, y0: int, y1: int) -> tuple[list[TextBox], int, int]:
        """Detect text in rows [y0, y1); grow the band once if a line is cut by its top or bottom edge."""
        h = image.shape[0]
        for attempt in range(2):
            self.stats.regions_read += 1
            self.stats.region_pixels += (y1 - y0) * image.shape[1]
            boxes = self.engine.detect(image[y0:y1])
            if attempt:
                break
            grow_top = grow_bottom = 0
            for b in boxes:
                by0, by1 = float(b.quad[:, 1].min()), float(b.quad[:, 1].max())
                line_h = max(1, int(by1 - by0))
                if by0 <= 2 and y0 > 0:
                    grow_top = max(grow_top, line_h)
                if by1 >= (y1 - y0) - 2 and y1 < h:
                    grow_bottom = max(grow_bottom, line_h)
            if not grow_top and not grow_bottom:
                break
            y0, y1 = max(0, y0 - grow_top), min(h, y1 + grow_bottom)
        return boxes, y0, y1

    def _read_bands(
        self, image: np.ndarray, gray: np.ndarray, bands: list[tuple[int, int]], t: float
    ) -> set[int]:
        """Detect and read text in `bands`; update or start tracks. Returns ids of tracks seen."""
        cfg = self.cfg
        h, w = image.shape[:2]
        seen: set[int] = set()
        pending: list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]] = []
        for y0, y1 in bands:
            boxes, by0, _ = self._detect_band(image, y0, y1)
            for b in boxes:
                quad = b.quad + np.array([0, by0], dtype=np.float32)
                x1 = int(max(0, np.floor(quad[:, 0].min())))
                y1b = int(max(0, np.floor(quad[:, 1].min())))
                x2 = int(min(w, np.ceil(quad[:, 0].max())))
                y2 = int(min(h, np.ceil(quad[:, 1].max())))
                if y2 - y1b < cfg.min_box_height_px or x2 <= x1:
                    continue
                self.stats.boxes_detected += 1
                box = (x1, y1b, x2, y2)
                thumb = _thumb(gray, box)
                track = self._same_looking(box, thumb, seen)
                if track is not None:
                    self._touch(track, box, t)
                    seen.add(id(track))
                    continue
                pending.append((box, thumb, quad))
        if not pending:
            return seen
        crops = [_crop_quad(image, quad) for _, _, quad in pending]
        readings = self.engine.recognize(crops)
        self.stats.boxes_recognized += len(crops)
        for (box, thumb, _), (raw, score) in zip(pending, readings, strict=True):
            text = normalize_caption(raw)
            if score < cfg.min_text_score or _alnum_count(text) < cfg.min_chars:
                continue
            if _compact(text) in self._ignore:
                continue
            track = self._same_text(box, text)
            if track is None:
                self._tracks.append(_Track(box, thumb, text, raw, score, t, t))
                seen.add(id(self._tracks[-1]))
                continue
            # A piece of a caption (the rest covered for a moment) confirms it but does not redefine
            # where it is or what it looks like.
            whole = _area(box) >= 0.8 * _area(track.box)
            self._touch(track, box if whole else track.box, t)
            if whole:
                track.thumb = thumb
            track.readings += 1
            if score > track.score:  # keep the clearest reading as the caption's text
                track.text, track.raw_text, track.score = text, raw, score
            seen.add(id(track))
        return seen

    def _touch(self, track: _Track, box: tuple[int, int, int, int], t: float) -> None:
        if not track.visible or track.last_s < t:
            track.samples += 1
        track.visible = True
        track.box = box
        track.last_s = max(track.last_s, t)

    def _same_looking(
        self, box: tuple[int, int, int, int], thumb: np.ndarray, seen: set[int]
    ) -> _Track | None:
        best: _Track | None = None
        best_diff = self.cfg.same_box_diff
        for tr in self._tracks:
            if id(tr) in seen or _iou(box, tr.box) < self.cfg.same_box_iou:
                continue
            d = _thumb_diff(tr.thumb, thumb)
            if d < best_diff:
                best, best_diff = tr, d
        return best

    def _same_text(self, box: tuple[int, int, int, int], text: str) -> _Track | None:
        from rapidfuzz import fuzz

        key = _compact(text)
        best: _Track | None = None
        best_ratio = self.cfg.same_text_ratio
        for tr in self._tracks:
            if _iou(box, tr.box) <= 0.1:
                continue
            r = float(fuzz.ratio(key, _compact(tr.text)))
            if r >= best_ratio:
                best, best_ratio = tr, r
        return best

    def _emit(self, tracks: list[_Track]) -> list[Utterance]:
        out = []
        for tr in sorted(tracks, key=lambda tr: (tr.first_s, tr.box[1], tr.box[0])):
            out.append(tr.to_utterance(self._next_index))
            self._next_index += 1
        self.stats.captions += len(out)
        return out


# --- registry ------------------------------------------------------------------------------------


def frame_of(context: DetectionContext) -> Frame | None:
    """The context's frame as a `Frame` (it may carry a `Frame`, or an image and `frame_s`)."""
    if context.frame is None:
        return None
    if isinstance(context.frame, Frame):
        return context.frame
    if context.frame_s is None:
        raise ValueError("a DetectionContext with an image frame needs frame_s (its time)")
    return Frame(t_s=float(context.frame_s), image=np.asarray(context.frame))


TextDetect = Callable[[Utterance], Iterable[Detection]]


class ScreenTextDetector(Detector[ScreenTextConfig]):
    """Detector type ``ocr``: a `ScreenTextReader` whose captions go through the text rules.

    Each caption the reader hands out is appended to `captions` (for storage and for the price
    detector) and passed to `text_detect` (by default the rule packs, `RulesDetector`, built on first
    use), whose detections `detect` returns. Call `flush()` at the end of the media.
    """

    type = "ocr"

    config_model = ScreenTextConfig

    def __init__(
        self,
        config: ScreenTextConfig | None = None,
        *,
        engine: OcrEngine | None = None,
        text_detect: TextDetect | None = None,
    ) -> None:
        super().__init__(config or ScreenTextConfig())
        self.reader = ScreenTextReader(self.config, engine)
        self._text_detect = text_detect
        self.captions: list[Utterance] = []

    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        frame = frame_of(context)
        if frame is None or not self.config.enabled:
            return []
        return self._check(self.reader.feed(frame))

    def flush(self) -> list[Detection]:
        return self._check(self.reader.flush())

    def _check(self, captions: list[Utterance]) -> list[Detection]:
        if not captions:
            return []
        self.captions.extend(captions)
        if self._text_detect is None:
            from detectors.engine import RulesDetector

            rules = RulesDetector()
            self._text_detect = lambda u: rules.detect(DetectionContext(utterance=u))
        return [d for u in captions for d in self._text_detect(u)]

    @classmethod
    def phrase_table(cls) -> PhraseTable:
        return PhraseTable(
            exempt_reason="reads frames; the captions it produces are matched by the rules detector, "
            "whose phrase tables cover them"
        )
