"""Normalization of recognizer words: simplified script, half-width ASCII, whitespace, empty words."""

from __future__ import annotations

from dataclasses import dataclass

from asr.normalize import compact_text, normalize_text, normalize_words, to_half_width, to_simplified


@dataclass(frozen=True)
class RawWord:
    word: str
    start: float
    end: float
    probability: float = 0.9


def words(*items: tuple[str, float, float]) -> list[RawWord]:
    return [RawWord(t, s, e) for t, s, e in items]


def test_traditional_becomes_simplified() -> None:
    assert to_simplified("這個產品質量好，後來價格漲了") == "这个产品质量好，后来价格涨了"
    assert to_simplified("头发") == "头发"  # already simplified stays


def test_full_width_ascii_becomes_half_width_but_cjk_punctuation_stays() -> None:
    assert to_half_width("ＡＢＣ１２３％，！") == "ABC123%,!"
    assert to_half_width("价格。顿号、") == "价格。顿号、"


def test_normalize_text_collapses_whitespace() -> None:
    assert normalize_text("  原價\u3000 ９９ 元 ") == "原价 99 元"


def test_compact_text_keeps_only_letters_and_digits() -> None:
    assert compact_text("字幕由 Amara.org 社區提供！") == "字幕由amaraorg社区提供"


def test_words_are_simplified_and_text_is_their_concatenation() -> None:
    raw = words(
        (" 這個", 0.0, 0.4), ("產品", 0.4, 0.8), ("原價", 0.8, 1.2), ("９９", 1.2, 1.5), ("元。", 1.5, 1.7)
    )
    out = normalize_words(raw)
    assert [w.text for w in out] == ["这个", "产品", "原价", "99", "元。"]
    assert "".join(w.text for w in out) == "这个产品原价99元。"


def test_phrase_aware_conversion_is_cut_back_to_word_boundaries() -> None:
    # 瞭解 → 了解 needs the phrase; split across two words it must still convert and keep alignment.
    out = normalize_words(words(("瞭", 0.0, 0.2), ("解", 0.2, 0.4), ("一下", 0.4, 0.8)))
    assert [w.text for w in out] == ["了", "解", "一下"]


def test_offset_shifts_times_and_keeps_probability() -> None:
    out = normalize_words(words(("你好", 0.5, 1.0), ("朋友", 1.0, 1.6)), offset_s=100.0)
    assert [(w.start_s, w.end_s) for w in out] == [(100.5, 101.0), (101.0, 101.6)]
    assert all(w.probability == 0.9 for w in out)


def test_whitespace_and_empty_words_are_dropped() -> None:
    out = normalize_words(words((" ", 0.0, 0.1), ("好", 0.1, 0.3), ("\u3000", 0.3, 0.4), (" 的 ", 0.4, 0.5)))
    assert [w.text for w in out] == ["好", "的"]


def test_space_between_ascii_words_survives_inside_the_word() -> None:
    out = normalize_words(
        words(("买", 0.0, 0.2), (" iPhone", 0.2, 0.6), (" 15", 0.6, 0.8), (" 手机", 0.8, 1.0))
    )
    assert [w.text for w in out] == ["买", "iPhone", " 15", "手机"]
    assert "".join(w.text for w in out) == "买iPhone 15手机"


def test_no_words_gives_empty_tuple() -> None:
    assert normalize_words([]) == ()
