"""Price-claim extraction: the phrase table, numerals and money forms, timing to words, corpus lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from asr.types import Utterance, Word
from detectors.price import claim_fields, extract_claims, extract_from_utterance, parse_amount

DATA = Path(__file__).parent / "data"
CASES = yaml.safe_load((DATA / "price_phrases.yaml").read_text(encoding="utf-8"))["cases"]
EMPTY: dict[str, object] = {name: None for name in claim_fields()} | {"conditions": (), "pressure": ()}


def test_phrase_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert sum(1 for c in CASES if c["claims"]) >= 40


def _as_expected(c: object) -> dict[str, object]:
    got = {name: getattr(c, name) for name in claim_fields()}
    got["conditions"] = list(got["conditions"])  # type: ignore[arg-type]
    got["pressure"] = list(got["pressure"])  # type: ignore[arg-type]
    return got


@pytest.mark.parametrize("case", CASES, ids=[c["text"] for c in CASES])
def test_phrase_table(case: dict[str, object]) -> None:
    got = [_as_expected(c) for c in extract_claims(str(case["text"]))]
    want = []
    for exp in case["claims"]:  # type: ignore[union-attr]
        full = {k: (list(v) if isinstance(v, tuple) else v) for k, v in EMPTY.items()}
        full.update(exp)
        want.append(
            {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in full.items()}
        )
    assert got == want


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("九百九十九", 999),
        ("一千二", 1200),
        ("两百", 200),
        ("三百五十九", 359),
        ("1,299", 1299),
        ("一万二", 12000),
        ("1.2万", 12000),
        ("二百八十", 280),
        ("一千零五十", 1050),
        ("19.9", 19.9),
    ],
)
def test_parse_amount(text: str, value: float) -> None:
    assert parse_amount(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "current"),
    [
        ("只要九块九", 9.9),
        ("只要九块九毛九", 9.99),
        ("只要两块五", 2.5),
        ("只要五毛", 0.5),
        ("只要一百九十九米", 199),
        ("只要¥1,299", 1299),
        ("只要１９９元", 199),
        ("只要一百块", 100),
    ],
)
def test_money_forms(text: str, current: float) -> None:
    (claim,) = extract_claims(text)
    assert claim.current_price == pytest.approx(current)


def test_span_points_at_the_original_text() -> None:
    text = "家人們,這個精華液原價九百九十九元,今天直播間只要一百九十九元!"
    (c,) = extract_claims(text)
    assert c.matched == text[c.start : c.end]
    assert c.matched.startswith("原價九百九十九元") and c.matched.endswith("一百九十九元")
    assert c.product == "精华液"


def test_claims_are_timed_to_their_words() -> None:
    words = [
        Word("大家好", 10.0, 11.0),
        Word("我们", 11.0, 11.5),
        Word("原价", 12.0, 12.4),
        Word("九百九十九", 12.4, 13.2),
        Word("今天", 13.3, 13.6),
        Word("只要", 13.6, 14.0),
        Word("一百九十九", 14.0, 15.0),
        Word("赶紧", 15.5, 16.0),
    ]
    utt = Utterance(
        index=3, start_s=10.0, end_s=16.0, text="".join(w.text for w in words), words=tuple(words)
    )
    (claim,) = extract_from_utterance(utt)
    assert (claim.start_s, claim.end_s) == (12.0, 15.0)
    assert claim.source == "speech" and claim.text == utt.text
    assert (claim.reference_price, claim.current_price) == (999, 199)


def test_corpus_claims_are_read_from_text_and_asr(corpus: Path) -> None:
    """Every corpus line with labelled claims yields them, both from the text and from Whisper's output."""
    lines = [
        json.loads(x) for x in (corpus / "clips.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()
    ]
    labelled = [x for x in lines if x.get("claims")]
    assert len(labelled) >= 4
    for x in labelled:
        (c,) = extract_claims(x["text"])
        assert (c.reference_price, c.current_price) == (
            x["claims"]["original_price"],
            x["claims"]["current_price"],
        )
    # and the clean lines give no reference-price comparison
    for x in lines:
        if x["labels"] == ["clean"]:
            assert all(c.reference_price is None for c in extract_claims(x["text"])), x["text"]
    # Whisper's transcripts: 專貴價 (专柜价) and 市場價1200 are read; 原價99/199 keeps what was heard
    asr = [
        s["text"]
        for n in (0, 1)
        for s in json.loads((DATA / f"asr_broadcast_{n}.json").read_text())["segments"]
    ]
    got = {(c.reference_kind, c.reference_price, c.current_price) for t in asr for c in extract_claims(t)}
    assert ("专柜价", 2800, 280) in got
    assert ("市场价", 1200, 120) in got
    assert ("原价", 99, 199) in got


def test_overlay_captions(corpus: Path) -> None:
    meta = json.loads((corpus / "broadcast_0.json").read_text(encoding="utf-8"))
    for ov in meta["overlays"]:
        claims = extract_claims(ov["text"])
        if ov.get("claims"):
            (c,) = claims
            assert (c.reference_price, c.current_price) == (
                ov["claims"]["original_price"],
                ov["claims"]["current_price"],
            )
        else:
            assert all(c.reference_price is None for c in claims)
