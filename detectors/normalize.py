"""Text normalization for rule matching, with a map back to the original characters.

What ASR and evasive hosts do to Chinese, undone in a fixed order (each step is recorded for
`livewatch rules explain`):

1. script: traditional → simplified (OpenCC ``t2s``; Whisper writes either at random);
2. width and case: NFKC per character (full-width ``ＡＢＣ１２３％`` → ``abc123%``), lowercase;
3. evasions: variant characters and pinyin spellings that hosts use to dodge keyword filters
   (``蕞低价``/``zui低价`` → ``最低价``, ``直啵间`` → ``直播间``) and the percent words
   (``百分之百``/``百分百`` → ``100%``) so that rules and speech meet in one form;
4. punctuation and spaces are removed (ASR drops them anyway); ``%``, symbols and a decimal point
   between digits stay. Where punctuation or space was removed a clause *break* is recorded, used to
   keep negation from reaching across clauses.

Every character of `Normalized.text` carries the index of the original character it came from
(`orig_index`), so a match on normalized text is located back in the original text, and through the
utterance's words, in time.

`pinyin_codes` turns normalized text into a string of the same length in which every Chinese
character is replaced by one private-use code point per toneless pinyin syllable (homophones share
a code; digits take the code of their Chinese numeral). Matching on that string finds 源价 for 原价
with plain string search. A lone pinyin syllable written in Latin letters next to Chinese characters
(``jue对``) is kept in the normalized text as that syllable's code, so it matches in pinyin mode.

All functions here are pure and thread-safe; the code tables are built once, on first use, under a
lock.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_VARIANTS",
    "Normalized",
    "code_syllables",
    "display",
    "is_cjk",
    "normalize",
    "normalize_term",
    "pinyin_codes",
    "pinyin_display",
    "pinyin_latin",
    "syllable_of_code",
]

# Variant spellings hosts use to dodge filters, and spellings ASR produces for the same words.
# Keys are matched after t2s and lowercasing; Latin keys only as whole Latin runs.
DEFAULT_VARIANTS: dict[str, str] = {
    "蕞": "最",
    "嶊": "最",
    "zui": "最",
    "啵": "播",
    # 袪 (a sleeve's cuff) is the usual misspelling of 祛 (dispel) in 祛痘/祛斑/祛皱 claims
    "袪": "祛",
    "百分之百": "100%",
    "百分百": "100%",
    "no.1": "第一",
    "no1": "第一",
    "top1": "第一",
    "numberone": "第一",
    "number1": "第一",
    "topone": "第一",
    # digits written inside the idioms of rank and uniqueness (唯1, 独1无2): one form for both
    "唯1": "唯一",
    "独1无2": "独一无二",
    "数1数2": "数一数二",
    "首屈1指": "首屈一指",
    "万里挑1": "万里挑一",
    "1流": "一流",
    # the capital (financial) numerals that have no other reading
    "壹": "一",
    "贰": "二",
    "叁": "三",
    # 日 for 天 in the phrases rules care about (七日无理由, 今日/明日 pressure), one form for both;
    # a number of 日 (七日, 7日) is handled by _NUM_FORM_RE below
    "日无理由": "天无理由",
    "今日": "今天",
    "明日": "明天",
    "昨日": "昨天",
    "每日": "每天",
    "当日": "当天",
}

# Number forms folded to one spelling, so that a rule written one way meets the others:
# - 第 + one digit (第1, 排名第1) → 第 + Chinese numeral (第一): ranks and ordinals are written with
#   Chinese numerals in the packs, and 第1步 stays an ordinal exactly as 第一步 does;
# - a duration in 日 (七日, 7日, 十五日) → 天, unless it is a date (本月7日: a 月/年/号 or another
#   numeral before the number) or 日 starts another word (日元, 日本, 日报, 日期 ...).
_CN_DIGIT = "零一二三四五六七八九"
_NUM_FORM_RE = re.compile(
    r"(?P<ord>(?<=第)[1-9](?![0-9%]|\.[0-9]))"
    r"|(?P<day>(?<![0-9月年号.〇零一二两三四五六七八九十百])(?:[0-9]{1,3}|[一二两三四五六七八九十]{1,3})日"
    r"(?![元币本语文式报记期志历程韩系货产剧常用]))"
)


def _has_num_form(text: str) -> bool:
    """`_NUM_FORM_RE.search(text)`, skipped when the text lacks both 第 and 日 (each match holds one)."""
    return ("日" in text or "第" in text) and _NUM_FORM_RE.search(text) is not None


def _num_form(m: re.Match[str]) -> str:
    if m.group("ord") is not None:
        return _CN_DIGIT[int(m.group("ord"))]
    return m.group("day")[:-1] + "天"


_CODE_BASE = 0xE000  # private-use area: one code point per toneless pinyin syllable
_DIGIT_SYLLABLES = ("ling", "yi", "er", "san", "si", "wu", "liu", "qi", "ba", "jiu")


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2FFFF


@dataclass(frozen=True, slots=True)
class Normalized:
    """Normalized text plus, for each of its characters, the index of the original character."""

    original: str
    text: str
    orig_index: tuple[int, ...]
    breaks: frozenset[int]  # normalized indices i such that a clause break precedes text[i]
    recorded_steps: tuple[tuple[str, str], ...] = ()  # filled when normalize(record_steps=True)

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """(step name, text after the step) for explain; recomputed when they were not recorded."""
        if self.recorded_steps or not self.original:
            return self.recorded_steps
        return _normalize_slow(self.original, _to_simplified(self.original), True).recorded_steps

    def orig_span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covering normalized characters [start, end)."""
        if not self.orig_index or end <= start:
            return 0, 0
        end = min(end, len(self.orig_index))
        return self.orig_index[start], self.orig_index[end - 1] + 1

    def has_break(self, start: int, end: int) -> bool:
        """Whether a clause break lies strictly inside normalized [start, end]."""
        return any(start < b <= end for b in self.breaks)


class _Tables:
    """Pinyin code tables, built once."""

    def __init__(self) -> None:
        from pypinyin.pinyin_dict import pinyin_dict

        syl_code: dict[str, str] = {}
        char_code: dict[int, str] = {}

        def code_for(syl: str) -> str:
            c = syl_code.get(syl)
            if c is None:
                c = chr(_CODE_BASE + len(syl_code))
                syl_code[syl] = c
            return c

        for cp, readings in pinyin_dict.items():
            first = readings.split(",", 1)[0]
            syl = _toneless(first)
            if syl:
                char_code[cp] = code_for(syl)
        for d, syl in enumerate(_DIGIT_SYLLABLES):
            char_code[ord(str(d))] = code_for(syl)
        self.syl_code = syl_code
        self.code_syl = {c: s for s, c in syl_code.items()}
        self.translate = char_code
        # The same for the Basic Multilingual Plane as a list indexed by code point (a character without a
        # code maps to itself): str.translate looks a character up by its index, without hashing into the
        # large dict, for every text without supplementary-plane characters.
        bmp: list[str] = [chr(i) for i in range(_BMP)]
        for cp, code in char_code.items():
            if cp < _BMP:
                bmp[cp] = code
        self.translate_bmp = bmp
        # Latin runs that spell exactly one syllable (2+ letters; 'a', 'e', 'o' alone are too common).
        self.latin_syllables = {s for s in syl_code if len(s) >= 2 and s.isascii() and s.isalpha()}


def _toneless(syl: str) -> str:
    decomposed = unicodedata.normalize("NFD", syl)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


_tables: _Tables | None = None
_tables_lock = threading.Lock()


def _get_tables() -> _Tables:
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                _tables = _Tables()
    return _tables


@lru_cache(maxsize=1)
def _opencc():  # type: ignore[no-untyped-def]
    import opencc

    return opencc.OpenCC("t2s")


def _to_simplified(text: str) -> str:
    conv = _opencc().convert(text)
    if len(conv) == len(text):
        return conv
    # A phrase conversion changed the length; convert per character to keep the index map.
    cc = _opencc()
    return "".join(cc.convert(ch) if len(cc.convert(ch)) == 1 else ch for ch in text)


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    """NFKC + lowercase of one non-CJK character ('' is never returned for a kept char)."""
    return unicodedata.normalize("NFKC", ch).lower()


_KEEP_PUNCT = frozenset("%")


def _variant_regex(variants: dict[str, str]) -> re.Pattern[str]:
    """One alternation of the keys, longest first. Every branch starts with its first character (a
    condition on the character before it comes right after, as a lookbehind over both), so that the
    regex engine skips, in C, every position whose character starts no key."""
    parts = []
    for key in sorted(variants, key=len, reverse=True):
        head, rest = re.escape(key[:1]), re.escape(key[1:])
        if key.isascii() and key[:1].isalpha():
            esc = rf"{head}(?<![a-z]{head}){rest}(?![a-z])"
        elif key[:1].isdigit():  # 1流 is not 21流
            esc = rf"{head}(?<![0-9.]{head}){rest}"
        else:
            esc = head + rest
        if key[-1:].isdigit():  # top1 is not top10, 唯1 is not 唯10
            esc = rf"{esc}(?![0-9])"
        parts.append(esc)
    return re.compile("|".join(parts))


_DEFAULT_VARIANT_RE = _variant_regex(DEFAULT_VARIANTS)
_LATIN_RUN = re.compile(r"[a-z]{2,6}")


def _apply_variants(
    chars: list[str],
    idx: list[int],
    variants: dict[str, str] | Callable[[re.Match[str]], str],
    pattern: re.Pattern[str],
) -> tuple[list[str], list[int]]:
    text = "".join(chars)
    if not pattern.search(text):
        return chars, idx
    out_c: list[str] = []
    out_i: list[int] = []
    pos = 0
    for m in pattern.finditer(text):
        out_c.extend(chars[pos : m.start()])
        out_i.extend(idx[pos : m.start()])
        rep = variants(m) if callable(variants) else variants[m.group(0)]
        src = idx[m.start() : m.end()]
        for k, ch in enumerate(rep):
            out_c.append(ch)
            out_i.append(src[min(k, len(src) - 1)])
        pos = m.end()
    out_c.extend(chars[pos:])
    out_i.extend(idx[pos:])
    return out_c, out_i


def _latin_syllables(chars: list[str], idx: list[int]) -> tuple[list[str], list[int]]:
    """Replace a lone pinyin syllable in Latin letters beside a Chinese character by its code."""
    text = "".join(chars)
    tables = _get_tables()
    out_c: list[str] | None = None
    out_i: list[int] = []
    pos = 0
    for m in _LATIN_RUN.finditer(text):
        s, e = m.span()
        if (s > 0 and text[s - 1].isascii() and text[s - 1].isalnum()) or (
            e < len(text) and text[e].isascii() and text[e].isalnum()
        ):
            continue
        beside_cjk = (s > 0 and is_cjk(text[s - 1])) or (e < len(text) and is_cjk(text[e]))
        if not beside_cjk or m.group(0) not in tables.latin_syllables:
            continue
        if out_c is None:
            out_c = []
        out_c.extend(chars[pos:s])
        out_i.extend(idx[pos:s])
        out_c.append(tables.syl_code[m.group(0)])
        out_i.append(idx[s])
        pos = e
    if out_c is None:
        return chars, idx
    out_c.extend(chars[pos:])
    out_i.extend(idx[pos:])
    return out_c, out_i


_FOLD = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_FOLD.update({c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)})  # full-width ASCII
_FOLD.update({c + 0xFEE0: c + 32 for c in range(ord("A"), ord("Z") + 1)})  # full-width capitals
_FOLD[0x3000] = 0x20  # ideographic space
# A text holding none of _FOLD's characters translates to itself (most speech: the translation is skipped).
_FOLDED_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_FOLD)) + "]")
# Characters the fast path keeps as they are; anything else is looked at one by one.
_NONKEEP = re.compile(r"[^\u4e00-\u9fff\u3400-\u4dbfa-z0-9%]")


def normalize(text: str, *, record_steps: bool = False) -> Normalized:
    """Normalize `text` for matching. See the module docstring for the steps."""
    simp = _to_simplified(text)
    folded = simp.translate(_FOLD) if _FOLDED_CHARS.search(simp) else simp
    if (
        record_steps
        or _DEFAULT_VARIANT_RE.search(folded)
        or _has_num_form(folded)
        or _has_latin_syllable(folded)
    ):
        return _normalize_slow(text, simp, record_steps)
    parts: list[str] = []
    index: list[int] = []
    breaks: set[int] = set()
    pos = 0
    olen = 0
    n = len(folded)
    for m in _NONKEEP.finditer(folded):
        i = m.start()
        if i > pos:
            parts.append(folded[pos:i])
            index.extend(range(pos, i))
            olen += i - pos
        pos = i + 1
        ch = folded[i]
        kept = _keep_one(ch, folded, i, n)
        if kept is None:
            breaks.add(olen)
        else:
            parts.append(kept)
            index.extend([i] * len(kept))
            olen += len(kept)
    if pos == 0:
        return Normalized(text, folded, tuple(range(n)), frozenset(), ())
    if pos < n:
        parts.append(folded[pos:])
        index.extend(range(pos, n))
        olen += n - pos
    result = "".join(parts)
    if _DEFAULT_VARIANT_RE.search(result) or _has_num_form(result):  # written with spaces inside
        return _normalize_slow(text, simp, False)
    breaks.discard(0)
    breaks.discard(olen)
    return Normalized(text, result, tuple(index), frozenset(breaks), ())


def _keep_one(ch: str, text: str, i: int, n: int) -> str | None:
    """What a character outside the fast path's set becomes: kept text, or None (dropped, a break)."""
    f = _fold_char(ch)
    if f != ch and f and all(is_cjk(c) or (c.isascii() and c.isalnum()) or c == "%" for c in f):
        return f  # ①, ㎏, compatibility ideographs
    cat = unicodedata.category(ch)
    if cat == "Co":
        return ch
    if ch == "." and 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
        return ch
    if ch.isalnum():
        return f or ch
    if cat[0] in "PZC":
        return None
    return ch  # other symbols (¥, +, ~) carry meaning in prices


def _has_latin_syllable(text: str) -> bool:
    if not _LATIN_RUN.search(text):
        return False
    chars = list(text)
    out, _ = _latin_syllables(chars, list(range(len(chars))))
    return out is not chars


def _normalize_slow(text: str, simp: str, record_steps: bool) -> Normalized:
    steps: list[tuple[str, str]] = []
    if record_steps:
        steps.append(("t2s", simp))

    chars: list[str] = []
    idx: list[int] = []
    for i, ch in enumerate(simp):
        if is_cjk(ch):
            chars.append(ch)
            idx.append(i)
            continue
        for f in _fold_char(ch):
            chars.append(f)
            idx.append(i)
    if record_steps:
        steps.append(("width+case", "".join(chars)))

    chars, idx = _apply_variants(chars, idx, DEFAULT_VARIANTS, _DEFAULT_VARIANT_RE)
    chars, idx = _apply_variants(chars, idx, _num_form, _NUM_FORM_RE)
    chars, idx = _latin_syllables(chars, idx)
    if record_steps:
        steps.append(("variants", _display("".join(chars))))

    out_c: list[str] = []
    out_i: list[int] = []
    breaks: set[int] = set()
    n = len(chars)
    for k, ch in enumerate(chars):
        if is_cjk(ch) or ch.isalnum() or ch in _KEEP_PUNCT:
            out_c.append(ch)
            out_i.append(idx[k])
            continue
        cat = unicodedata.category(ch)
        if cat == "Co":  # syllable codes made above
            out_c.append(ch)
            out_i.append(idx[k])
        elif ch == "." and 0 < k < n - 1 and chars[k - 1].isdigit() and chars[k + 1].isdigit():
            out_c.append(ch)
            out_i.append(idx[k])
        elif cat[0] in "PZC":
            breaks.add(len(out_c))
        else:  # other symbols (¥, +, ~) carry meaning in prices
            out_c.append(ch)
            out_i.append(idx[k])
    joined = "".join(out_c)
    if _DEFAULT_VARIANT_RE.search(joined) or _NUM_FORM_RE.search(joined):
        # variants written across spaces or punctuation (百 分 之 百, 第 1 名); breaks inside them are dropped
        n_before = len(out_c)
        out_c, out_i = _apply_variants(out_c, out_i, DEFAULT_VARIANTS, _DEFAULT_VARIANT_RE)
        out_c, out_i = _apply_variants(out_c, out_i, _num_form, _NUM_FORM_RE)
        if len(out_c) != n_before:
            breaks = {b for b in breaks if b <= len(out_c)}
    result = "".join(out_c)
    breaks.discard(0)
    breaks.discard(len(result))
    if record_steps:
        steps.append(("strip punctuation", _display(result)))
    return Normalized(text, result, tuple(out_i), frozenset(breaks), tuple(steps))


@functools.lru_cache(maxsize=65536)
def normalize_term(term: str) -> str:
    """Normalize a rule's literal term the same way as speech (cached: packs repeat lexicon terms)."""
    return normalize(term).text


def pinyin_codes(text: str) -> str:
    """One code point per character of normalized `text`: homophones share a code."""
    tables = _get_tables()
    if text and max(text) >= _ASTRAL:
        return text.translate(tables.translate)
    return text.translate(tables.translate_bmp)


_BMP = 0x10000
_ASTRAL = chr(_BMP)


def code_syllables() -> dict[str, str]:
    """The code → Latin syllable table (read-only; shared)."""
    return _get_tables().code_syl


def syllable_of_code(ch: str) -> str | None:
    return _get_tables().code_syl.get(ch)


def pinyin_latin(codes: str) -> str:
    """Latin toneless pinyin of a code string (for fuzzy comparison and display)."""
    syl = _get_tables().code_syl
    return "".join(syl.get(c, c) for c in codes)


def pinyin_display(text: str) -> str:
    """Space-separated toneless pinyin of normalized `text` (non-Chinese characters kept)."""
    syl = _get_tables().code_syl
    return " ".join(syl.get(c, c) for c in pinyin_codes(text))


def _display(text: str) -> str:
    """Render syllable codes as [syl] for humans."""
    if not any(unicodedata.category(c) == "Co" for c in text):
        return text
    syl = _get_tables().code_syl
    return "".join(f"[{syl[c]}]" if c in syl else c for c in text)


def display(text: str) -> str:
    """Normalized text with syllable codes shown as [syl]."""
    return _display(text)
