"""Text normalization of Whisper output: simplified script, half-width ASCII, no stray whitespace.

Pure functions; the OpenCC converter is created once per process and only read afterwards, so these are
safe to call from any thread.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cache
from typing import Protocol

import opencc

from asr.types import Word

__all__ = ["WordLike", "compact_text", "normalize_text", "normalize_words", "to_half_width", "to_simplified"]

# Full-width forms of printable ASCII (U+FF01..U+FF5E) sit exactly 0xFEE0 above it.
_FULL_TO_HALF = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FULL_TO_HALF[0x3000] = 0x20  # ideographic space


class WordLike(Protocol):
    """A recognizer's word: faster-whisper's `Word` has these fields."""

    @property
    def word(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def probability(self) -> float: ...


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese (OpenCC 't2s', phrase-aware)."""
    return _t2s().convert(text) if text else text


def to_half_width(text: str) -> str:
    """Full-width ASCII letters, digits and punctuation (Ａ１，！) → their ASCII forms."""
    return text.translate(_FULL_TO_HALF)


def normalize_text(text: str) -> str:
    """Simplified script, half-width ASCII, whitespace runs collapsed and trimmed."""
    return " ".join(to_half_width(to_simplified(text)).split())


def compact_text(text: str) -> str:
    """`normalize_text` without punctuation, symbols or spaces, lower-cased: for comparing lines."""
    return "".join(ch for ch in normalize_text(text).lower() if unicodedata.category(ch)[0] in ("L", "N"))


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def normalize_words(words: Iterable[WordLike], *, offset_s: float = 0.0) -> tuple[Word, ...]:
    """Recognizer words → `Word`s with normalized text, times shifted by `offset_s`, empty words dropped.

    Script conversion runs on the joined text (OpenCC converts some characters by phrase), then is cut
    back to words; t2s keeps lengths, and a word-by-word conversion is the fallback if it ever does not.
    Whitespace is dropped, except one space kept at the front of a word that separates two ASCII words
    ("iPhone 15"), so `"".join(w.text for w in result)` reads naturally and is the utterance text.
    """
    raw = list(words)
    raw_texts = [w.word for w in raw]
    joined = "".join(raw_texts)
    converted = to_half_width(to_simplified(joined))
    if len(converted) == len(joined):
        texts, pos = [], 0
        for t in raw_texts:
            texts.append(converted[pos : pos + len(t)])
            pos += len(t)
    else:
        texts = [to_half_width(to_simplified(t)) for t in raw_texts]

    out: list[Word] = []
    for w, text in zip(raw, texts, strict=True):
        core = "".join(text.split())
        if not core:
            continue
        if out and text[:1].isspace() and _is_ascii_alnum(out[-1].text[-1]) and _is_ascii_alnum(core[0]):
            core = " " + core
        out.append(
            Word(
                text=core,
                start_s=round(offset_s + float(w.start), 3),
                end_s=round(offset_s + float(w.end), 3),
                probability=float(w.probability),
            )
        )
    return tuple(out)
