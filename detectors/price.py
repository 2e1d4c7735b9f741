"""Price claims: extraction from speech and on-screen text, and the checks that prove them false.

"原价九百九十九, 今天只要一百九十九" is a *claim* (reference 999, current 199, 80% off). Speech alone
rarely proves it false; history does. This module therefore has two halves:

* `extract_claims(text)` turns one line of text (an ASR utterance or an OCR caption, the same code)
  into structured `ClaimSpan`s: reference price and kind (原价, 划线价, 专柜价, 市场价, 日常价, 官方价,
  别家价 ...), current price and kind (现价, 到手价, 直播间价, 只要, 秒杀价 ...), discount (一折, 八五折,
  半价), reduction (立减 N), conditions (领券, 满减, 前N名, 限时), pressure (最后一天, 涨价, 恢复原价,
  仅剩), a stated basis for the reference, and the product when named. Chinese numerals and money forms
  (九百九十九, 一千二, 两百, 九块九, 1,299, ¥, 元/块/米) are read with cn2an plus a few money rules.
  Keywords match on toneless pinyin as well as characters, so ASR's 源价/專貴價 still read as 原价/专柜价.
* `PriceChecker(config, history).check(claim, ...)` returns `price_fraud` detections: implausible
  discounts and unsupported references (one claim alone), and contradictions with the stream's own
  earlier claims and with imported known prices (through the `PriceHistory` protocol, implemented over
  the database by `store.prices`; detectors never import the store).

Concurrency: extraction functions are pure and thread-safe. A `PriceChecker` holds per-scan state
(which earlier claims it has already reported) and is meant for one analysis worker; it reads history
through the protocol and never writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from asr.types import Utterance
from detectors.base import DetectionContext, Detector, PhraseTable
from detectors.normalize import Normalized, is_cjk, normalize, pinyin_codes, pinyin_latin
from detectors.price_config import PriceConfig, PriceRule, load_price_config
from detectors.types import Detection, PriceClaim

__all__ = [
    "CATEGORY",
    "ClaimSpan",
    "HistoricClaim",
    "KnownPrice",
    "PriceChecker",
    "PriceDetector",
    "PriceHistory",
    "analyze_utterances",
    "cross_check",
    "extract_claims",
    "extract_from_utterance",
    "parse_amount",
    "product_key",
    "same_product",
]

logger = logging.getLogger(__name__)

CATEGORY = "price_fraud"

# --------------------------------------------------------------------------------------------------
# Types


@dataclass(frozen=True, slots=True)
class ClaimSpan:
    """A price claim found in a text, with its character span [start, end) in that text."""

    start: int
    end: int
    matched: str  # the original text of the span
    reference_price: float | None = None
    reference_kind: str | None = None
    current_price: float | None = None
    current_kind: str | None = None
    discount: float | None = None
    reduction: float | None = None
    conditions: tuple[str, ...] = ()
    product: str | None = None
    pressure: tuple[str, ...] = ()
    basis: str | None = None

    def to_claim(self, *, source: str, start_s: float, end_s: float, text: str) -> PriceClaim:
        return PriceClaim(
            source=source,
            start_s=start_s,
            end_s=end_s,
            text=text,
            reference_price=self.reference_price,
            reference_kind=self.reference_kind,
            current_price=self.current_price,
            current_kind=self.current_kind,
            discount=self.discount,
            reduction=self.reduction,
            conditions=self.conditions,
            product=self.product,
            pressure=self.pressure,
            basis=self.basis,
        )


@dataclass(frozen=True, slots=True)
class HistoricClaim:
    """A stored claim of a stream: the claim, when it was said, and what it became (alert, evidence)."""

    claim: PriceClaim
    ts: float
    broadcast_id: str
    stream_id: str | None = None
    claim_id: int | None = None
    alert_id: str | None = None
    evidence_dir: str | None = None


@dataclass(frozen=True, slots=True)
class KnownPrice:
    """A price known from outside (imported CSV/JSON)."""

    product: str
    price: float
    ts: float
    source: str = ""


class PriceHistory(Protocol):
    """Read access to earlier claims and imported prices. Implemented by `store.prices.SqlPriceHistory`."""

    def claims_for(
        self, stream_id: str, since_ts: float, until_ts: float, product: str | None = None
    ) -> list[HistoricClaim]:
        """Claims of `stream_id` with since_ts <= ts < until_ts, oldest first (product: exact name)."""
        ...

    def reference_prices(self, product: str | None, since_ts: float) -> list[KnownPrice]:
        """Imported prices dated at or after since_ts (product None: all; else exact/containing names)."""
        ...


# --------------------------------------------------------------------------------------------------
# Vocabulary. Kind keywords, pressure and basis phrases match on pinyin codes (homophones allowed);
# numbers, discounts, conditions and products match on the normalized characters.

_CN_DIGITS = "零〇一二两三四五六七八九"
_CN_NUM_CHARS = _CN_DIGITS + "十百千万亿"
_NUM = rf"(?:\d+(?:\.\d+)?|[{_CN_NUM_CHARS}]+(?:点[{_CN_DIGITS}]+)?)"

REFERENCE_KINDS: tuple[tuple[str, str], ...] = (
    ("原价", r"原价是?|原来的?价格?是?|原来(都)?(卖|要)|原售价|之前(都)?卖|以前(都)?卖"),
    ("划线价", r"划线价"),
    ("专柜价", r"专柜价|专柜(里|都|里面)?(卖|要|售价)|柜台价"),
    ("市场价", r"市场价|市面上?(都)?(卖|价)|市场上(都)?卖"),
    ("日常价", r"日常价|日常(卖|售价)|平时(价|都卖|都要|卖|要)|平常(价|都卖|卖)|平日价"),
    ("官方价", r"官方价|官方(售价|指导价)|官方旗舰店(卖|价|售价)?|官网(价|售价|卖)|指导价"),
    ("吊牌价", r"吊牌价|吊牌上?(写的是|标的是|写着|标着)"),
    ("零售价", r"建议零售价|零售价"),
    (
        "别家价",
        r"(超市|商场|外面|别家|别人家|别的直播间|其他直播间|其他平台|别的平台|实体店|线下店|隔壁)"
        r"(里面|里|都|也)?(卖的是|卖|要|标价|价格?是?)",
    ),
)
CURRENT_KINDS: tuple[tuple[str, str], ...] = (
    ("到手价", r"到手价|到手|券后价?|拍下"),
    ("直播间价", r"直播间价|直播价|直播间专享价"),
    ("秒杀价", r"秒杀价|秒杀"),
    ("活动价", r"活动价|福利价|团购价|优惠价|折后价|促销价|宠粉价|粉丝价"),
    ("只要", r"只要|只需要?|仅需|仅要|仅售|只卖|才卖|就卖|才要|只收|才"),
    ("现价", r"现价|现在|今天|今日|价格是|价格为|售价|特价|一口价"),
)
PRESSURE: tuple[tuple[str, str], ...] = (
    (
        "最后一天",
        r"最后一天|仅此一天|只有今天|就今天|只限今天|今天最后一(天|波|场)|错过今天|"
        r"过了今天(就)?(没有|恢复|涨)|今天不买(就)?(再也)?没有",
    ),
    (
        "涨价",
        r"(明天|明日|马上|下周|下个月|过两天|下播|过了今晚|今晚过后|过几天|很快|即将)"
        r"(就|开始|全面|都|会|要|立马)*涨价?|厂家?(通知|说|已经)?(要)?涨价|全面涨价|要涨价|"
        r"涨价通知|原材料涨价|外面(都)?涨(疯)?了",
    ),
    ("恢复原价", r"恢复(到)?(原价|日常价)|回到原价|恢复(到)?[零一二两三四五六七八九十百千万]+"),
    (
        "仅剩",
        r"(仅|只|就|还)剩(下)?(最后)?[零一二两三四五六七八九十百千万]*(单|件|个|份|套|瓶|盒|台)|"
        r"库存(只|仅|就)(有|剩)|最后[零一二两三四五六七八九十百千万]+(单|件|份|套)|手慢无|卖完(就|马上)?下架",
    ),
)
BASIS = (
    r"(近|前|过去|最近)[零一二两三四五六七八九十百0-9]+(天|日)(内)?(最低|成交)?(价|价格)?|"
    r"以[^是]{1,8}为准|可以(去)?(查|搜|对比)|(有|看)(截图|记录)|旗舰店同价|价格(依据|来源)"
)
_GENERIC_PRODUCTS = frozenset(
    "产品 东西 宝贝 链接 商品 月 时候 价 直播间 活动 福利 款式 价位 颜色 尺码 东东 品牌 牌子 系列".split()
)
_PRODUCT_RE = re.compile(
    r"(这一款|这一套|这款|这个|这件|这台|这套|这瓶|这支|这双|这盒|这包|这条|这只|这罐|这袋|我们家的?|咱们家的?|"
    r"咱家的?|本款)(?P<p>[\u4e00-\u9fff]{1,10})"
)
_PRODUCT_STOP = re.compile(
    r"原价|现价|价格|价钱|到手|只要|今天|今日|现在|直播|我们|专柜|市场|日常|划线|官方|秒杀|活动|福利|平时|平常|"
    r"超市|真的|大家|家人|朋友|宝宝|姐妹|已经|支持|产地|半价|质量|颜色|面料|味道|效果|"
    r"[的是在呢啊也就才卖用能有给买拍都很真超太比和跟还又再呀吧了不没多少送减打折一二两三四五六七八九十百千万]"
)
_NON_MONEY_AFTER = frozenset("折名位个件单份瓶盒套双支只条台次天号点月年岁斤克倍%人周楼期码秒粒片包袋罐箱颗")
_FILLER = frozenset("是就才都也呢啊哦的为要到了仅只需卖:¥$直接")
_MONEY_UNITS = ("块钱", "元钱", "块", "元", "圆", "米", "rmb")


# Numerals keep their own codes (by value: 2 = 二 = 两) so that 九 never matches 就 nor 十 matches 时.
_NUMERAL_CODES: dict[str, str] = {}
for _k, _group in enumerate(
    ("0零〇", "1一", "2二两", "3三", "4四", "5五", "6六", "7七", "8八", "9九", "十", "百", "千", "万", "亿")
):
    for _ch in _group:
        _NUMERAL_CODES[_ch] = chr(0xF700 + _k)


def _codes(text: str) -> str:
    """Pinyin codes of normalized text (homophones share a code), numerals coded by value."""
    return "".join(_NUMERAL_CODES.get(ch, c) for ch, c in zip(text, pinyin_codes(text), strict=True))


@lru_cache(maxsize=64)
def _pinyin_regex(pattern: str) -> re.Pattern[str]:
    """A character regex turned into one over `_codes` (Chinese characters → their codes)."""
    return re.compile(
        "".join((_NUMERAL_CODES.get(ch) or pinyin_codes(ch)) if is_cjk(ch) else ch for ch in pattern)
    )


@dataclass(slots=True)
class _Token:
    start: int
    end: int
    family: str  # ref | cur | amount | disc | red | cond | press | basis
    value: Any = None
    kind: str | None = None
    used: bool = False


# --------------------------------------------------------------------------------------------------
# Numbers


def parse_amount(text: str) -> float | None:
    """A numeral run (Arabic or Chinese) → number; None when it is not a number cn2an can read."""
    s = text.replace(",", "").replace("，", "")
    if not s:
        return None
    mult = 1.0
    if s[-1] == "万" and any(c.isdigit() for c in s):
        s, mult = s[:-1], 10000.0
    try:
        return float(s) * mult
    except ValueError:
        pass
    import cn2an

    try:
        v = cn2an.cn2an(s.replace("〇", "零"), "smart")
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return float(v) * mult


_DIGIT_VALUES = {
    ch: v
    for v, group in enumerate(("0零〇", "1一", "2二两", "3三", "4四", "5五", "6六", "7七", "8八", "9九"))
    for ch in group
}


def _digit_value(ch: str) -> int | None:
    return _DIGIT_VALUES.get(ch)


def _removed_between(n: Normalized, b: int) -> str:
    """Original characters dropped by normalization just before normalized index b."""
    lo = n.orig_index[b - 1] + 1
    hi = n.orig_index[b]
    return n.original[lo:hi]


def _find_amounts(n: Normalized) -> list[_Token]:
    """Numbers that may be money, with their unit-aware value (九块九 → 9.9, ¥1,299 → 1299)."""
    t = n.text
    out: list[_Token] = []
    consumed = 0  # 九块九: the tenths digit belongs to the amount before it
    for m in re.finditer(_NUM + r"万?", t):
        s, e = m.span()
        if s < consumed:
            continue
        run = m.group(0)
        # split a run at a clause break unless the break is a thousands separator (1,299)
        for b in sorted(x for x in n.breaks if s < x < e):
            tail = t[b:e]
            is_sep = (
                run[0].isdigit()
                and re.fullmatch(r"\d{3}(?:\D.*)?", tail) is not None
                and _removed_between(n, b).strip() in (",", "，")
            )
            if not is_sep:
                e = b
                break
        run = t[s:e]
        if not run or run in ("点",):
            continue
        if run.endswith("点"):  # 十二点 (a clock time) is not 12.
            e -= 1
            run = t[s:e]
        value = parse_amount(run)
        if value is None or value <= 0 or value > 1e8:
            continue
        unit = ""
        pos = e
        for u in _MONEY_UNITS:
            if t.startswith(u, pos) and pos not in n.breaks:
                unit, pos = u, pos + len(u)
                break
        if unit and not unit.startswith("rmb"):
            # 九块九 / 九块九毛九 / 两块五: tenths and hundredths after the unit
            d = _digit_value(t[pos]) if pos < len(t) and pos not in n.breaks else None
            if d is not None:
                nxt = t[pos + 1] if pos + 1 < len(t) else ""
                tenth_ok = (
                    nxt in ("毛", "角")
                    or nxt == ""
                    or (pos + 1) in n.breaks
                    or t.startswith("包邮", pos + 1)
                    or (nxt not in _NON_MONEY_AFTER and _digit_value(nxt) is None)
                )
                if tenth_ok:
                    value += d / 10
                    pos += 1
                    if pos < len(t) and t[pos] in "毛角":
                        pos += 1
                    d2 = _digit_value(t[pos]) if pos < len(t) and pos not in n.breaks else None
                    if d2 is not None and (
                        pos + 1 >= len(t)
                        or t[pos + 1] == "分"
                        or (_digit_value(t[pos + 1]) is None and t[pos + 1] not in _NON_MONEY_AFTER)
                    ):
                        value += d2 / 100
                        pos += 1
                        if pos < len(t) and t[pos] == "分":
                            pos += 1
        elif pos < len(t) and t[pos] in "毛角" and value < 10:
            value, unit, pos = value / 10, t[pos], pos + 1
        yen = s > 0 and t[s - 1] in "¥$"
        if not unit and not yen:
            if pos < len(t) and pos not in n.breaks and t[pos] in _NON_MONEY_AFTER:
                continue
            if s > 0 and t[s - 1] == "第":
                continue
            if not run[0].isdigit() and len(run) < 2:
                continue  # a lone 一/五 without a unit is a word (一直, 一样), not a price
        start = s - 1 if yen else s
        consumed = pos
        out.append(_Token(start, pos, "amount", round(value, 2), kind=unit or ("¥" if yen else None)))
    return out


# --------------------------------------------------------------------------------------------------
# Extraction


def _pinyin_tokens(n: Normalized, codes: str, table: Sequence[tuple[str, str]], family: str) -> list[_Token]:
    out: list[_Token] = []
    for kind, pattern in table:
        for m in _pinyin_regex(pattern).finditer(codes):
            s, e = m.span()
            if e <= s:
                continue
            # 元 right after a number is the currency (99元价格), not 原 misheard
            if n.text[s] == "元" and s > 0 and (n.text[s - 1].isdigit() or n.text[s - 1] in _CN_NUM_CHARS):
                continue
            out.append(_Token(s, e, family, kind=kind))
    return out


def _non_overlapping(tokens: list[_Token]) -> list[_Token]:
    """Longest first, then earliest; drop tokens overlapping a kept one."""
    kept: list[_Token] = []
    for tok in sorted(tokens, key=lambda x: (-(x.end - x.start), x.start)):
        if all(tok.end <= k.start or tok.start >= k.end for k in kept):
            kept.append(tok)
    return sorted(kept, key=lambda x: x.start)


def _discounts(t: str) -> list[_Token]:
    out: list[_Token] = []
    for m in re.finditer(
        r"(打)?([一二三四五六七八九1-9](?:[点.][一二三四五六七八九0-9]|[一二三四五六七八九1-9])?)折", t
    ):
        s = m.start()
        if s > 0 and (
            t[s - 1].isdigit() or t[s - 1] in _CN_NUM_CHARS or t[max(0, s - 3) : s].startswith("第")
        ):
            continue
        raw = m.group(2)
        if len(raw) == 3:  # 8.5 / 三点八
            a, b = _digit_value(raw[0]), _digit_value(raw[2])
            val = None if a is None or b is None else a / 10 + b / 100
        elif len(raw) == 2:  # 八五 / 85
            a, b = _digit_value(raw[0]), _digit_value(raw[1])
            val = None if a is None or b is None else a / 10 + b / 100
        else:
            a = _digit_value(raw)
            val = None if a is None else a / 10
        if val:
            out.append(_Token(s, m.end(), "disc", round(val, 4)))
    for m in re.finditer(r"打对折|对折|半价|便宜一半|砍半|省一半", t):
        s = m.start()
        if re.search(r"第[二2](件|单|份|个)$", t[max(0, s - 3) : s]):
            continue
        out.append(_Token(s, m.end(), "disc", 0.5))
    return out


def _conditions(t: str, amounts: list[_Token]) -> list[_Token]:
    out: list[_Token] = []

    def amount_in(lo: int, hi: int) -> list[_Token]:
        return [a for a in amounts if lo <= a.start and a.end <= hi]

    for m in re.finditer(rf"满({_NUM})(元|块)?(减|立减|送|返)({_NUM})(元|块)?", t):
        a, b = parse_amount(m.group(1)), parse_amount(m.group(4))
        if a is None or b is None:
            continue
        tok = _Token(m.start(), m.end(), "cond", f"满{_fmt(a)}减{_fmt(b)}")
        tok.kind = "满减"
        tok.used = True
        out.append(tok)
        out.append(_Token(m.start(4), m.end(), "red", b, kind="满减"))
        for am in amount_in(m.start(), m.end()):
            am.used = True
    for m in re.finditer(rf"前({_NUM})(名|位|个|单|件)", t):
        v = parse_amount(m.group(1))
        if v is not None:
            out.append(_Token(m.start(), m.end(), "cond", f"前{_fmt(v)}名"))
            for am in amount_in(m.start(), m.end()):
                am.used = True
    for m in re.finditer(rf"第[二2](件|单|份|个)(半价|{_NUM}折|免费|{_NUM}元)", t):
        out.append(_Token(m.start(), m.end(), "cond", "第二件" + m.group(2)))
        for am in amount_in(m.start(), m.end()):
            am.used = True
    for m in re.finditer(rf"买({_NUM})送({_NUM})", t):
        out.append(_Token(m.start(), m.end(), "cond", m.group(0)))
    for m in re.finditer(rf"(拍|买|下单)({_NUM})(件|单|份|瓶|盒|套)", t):
        v = parse_amount(m.group(2))
        if v is not None and v > 1:
            out.append(_Token(m.start(), m.end(), "cond", f"拍{_fmt(v)}件"))
    simple = (
        ("领券", r"领(取)?(优惠)?[券劵]|优惠[券劵]|用[券劵]|[券劵]后"),
        ("满减", r"满减"),
        ("限时", r"限时|倒计时"),
        ("限量", r"限量|数量有限|限购"),
        ("新人", r"新人(专享|价|券|礼)?"),
        ("会员", r"会员(价|专享)"),
        ("粉丝团", r"粉丝团|灯牌"),
    )
    for label, pat in simple:
        for m in re.finditer(pat, t):
            out.append(_Token(m.start(), m.end(), "cond", label))
    return out


def _reductions(t: str, amounts: list[_Token]) -> list[_Token]:
    out: list[_Token] = []
    by_start = {a.start: a for a in amounts if not a.used}
    for m in re.finditer(r"立减|直降|直减|立省|再减|下单减|省了?|便宜了?|优惠了?|降了|减了?", t):
        a = by_start.get(m.end())
        if a is None or a.used:
            continue
        a.used = True
        out.append(_Token(m.start(), a.end, "red", a.value))
    return out


def _products(t: str, cuts: Sequence[int] = ()) -> list[tuple[int, str]]:
    """Named products (这款面霜 → 面霜); a name ends at a stop word or where a price word starts (`cuts`,
    found on pinyin, so 金华业员价 → 金华业)."""
    out: list[tuple[int, str]] = []
    for m in _PRODUCT_RE.finditer(t):
        p = m.group("p")
        stop = _PRODUCT_STOP.search(p)
        if stop is not None:
            p = p[: stop.start()]
        ps = m.start("p")
        cut = min((c for c in cuts if ps < c < ps + len(p)), default=None)
        if cut is not None:
            p = p[: cut - ps]
        p = p[:8]
        if p and p not in _GENERIC_PRODUCTS:
            out.append((m.start("p"), p))
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _attach_amounts(t: str, kinds: list[_Token], amounts: list[_Token]) -> list[_Token]:
    """Give each free amount to the nearest kind keyword before it (only fillers between)."""
    events: list[_Token] = []
    for a in amounts:
        if a.used:
            continue
        best: _Token | None = None
        for k in kinds:
            if k.end > a.start:
                break
            gap = t[k.end : a.start]
            if len(gap) <= 4 and all(ch in _FILLER for ch in gap):
                best = k
        if best is not None:
            a.used = True
            events.append(_Token(best.start, a.end, best.family, a.value, kind=best.kind))
    return events


def extract_claims(text: str) -> list[ClaimSpan]:
    """Structured price claims of one text (pure; the same code reads speech and captions)."""
    if not text:
        return []
    n = normalize(text)
    t = n.text
    if not t:
        return []
    codes = _codes(t)
    amounts = _find_amounts(n)
    conds = _conditions(t, amounts)
    reds = [c for c in conds if c.family == "red"]
    conds = [c for c in conds if c.family == "cond"]
    reds += _reductions(t, amounts)
    kinds = _non_overlapping(
        _pinyin_tokens(n, codes, REFERENCE_KINDS, "ref") + _pinyin_tokens(n, codes, CURRENT_KINDS, "cur")
    )
    events = _attach_amounts(t, kinds, amounts)
    for a in amounts:
        if a.used or not a.kind or a.kind == "米":  # 一米六 is a height; 米 means 元 only after a price word
            continue
        if re.search(r"价值$|送$|赠$|价值[^\d]?$", t[max(0, a.start - 3) : a.start]):
            continue
        events.append(_Token(a.start, a.end, "cur", a.value, kind=None))
    events += _discounts(t) + reds + conds
    events += [
        _Token(m.start(), m.end(), "press", label)
        for label, pat in PRESSURE
        for m in _pinyin_regex(pat).finditer(codes)
    ]
    events += [
        _Token(m.start(), m.end(), "basis", t[m.start() : m.end()])
        for m in _pinyin_regex(BASIS).finditer(codes)
    ]
    events.sort(key=lambda x: (x.start, x.end))
    products = _products(t, [k.start for k in kinds])

    # terms after a sentence end (。！？) are another statement's; prices still pair across it, since
    # ASR puts 。 at any pause ("原价九百九十九。今天只要一百九十九" is one comparison)
    sentence_ends = sorted(b for b in n.breaks if any(ch in "。！？!?；;" for ch in _removed_between(n, b)))
    groups: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    slot_of = {"ref": "reference_price", "cur": "current_price", "disc": "discount", "red": "reduction"}
    for ev in events:
        slot = slot_of.get(ev.family)
        if (
            cur is None
            or (slot is not None and cur.get(slot) is not None)
            or (slot is None and any(cur["end"] <= b <= ev.start for b in sentence_ends))
        ):
            cur = {"start": ev.start, "end": ev.end, "conditions": [], "pressure": [], "slots": 0}
            groups.append(cur)
        cur["start"] = min(cur["start"], ev.start)
        cur["end"] = max(cur["end"], ev.end)
        if slot is not None:
            cur[slot] = ev.value
            cur["slots"] += 1
            if ev.family == "ref":
                cur["reference_kind"] = ev.kind
            elif ev.family == "cur":
                cur["current_kind"] = ev.kind
        elif ev.family == "cond":
            if ev.value not in cur["conditions"]:
                cur["conditions"].append(ev.value)
        elif ev.family == "press":
            if ev.value not in cur["pressure"]:
                cur["pressure"].append(ev.value)
        elif ev.family == "basis":
            cur["basis"] = ev.value

    out: list[ClaimSpan] = []
    prev: dict[str, Any] | None = None
    for g in groups:
        if not g["slots"] and not g["pressure"]:
            if prev is not None and not any(prev["end"] <= b <= g["start"] for b in sentence_ends):
                # trailing conditions of the same sentence belong to the claim before them
                prev["conditions"] += [c for c in g["conditions"] if c not in prev["conditions"]]
                prev["basis"] = prev.get("basis") or g.get("basis")
            continue
        prev = g
    for g in groups:
        if not g["slots"] and not g["pressure"]:
            continue
        product = None
        for pos, name in products:
            if pos <= g["end"]:
                product = name
        o_start, o_end = n.orig_span(g["start"], g["end"])
        out.append(
            ClaimSpan(
                start=o_start,
                end=o_end,
                matched=text[o_start:o_end],
                reference_price=g.get("reference_price"),
                reference_kind=g.get("reference_kind"),
                current_price=g.get("current_price"),
                current_kind=g.get("current_kind"),
                discount=g.get("discount"),
                reduction=g.get("reduction"),
                conditions=tuple(g["conditions"]),
                product=product,
                pressure=tuple(g["pressure"]),
                basis=g.get("basis"),
            )
        )
    return out


def extract_from_utterance(utt: Utterance) -> list[PriceClaim]:
    """Claims of one utterance or caption, each timed to the words that hold it."""
    out: list[PriceClaim] = []
    for cs in extract_claims(utt.text):
        start_s, end_s = utt.char_times(cs.start, cs.end)
        out.append(cs.to_claim(source=utt.source, start_s=start_s, end_s=end_s, text=utt.text))
    return out


# --------------------------------------------------------------------------------------------------
# Products


@lru_cache(maxsize=4096)
def product_key(name: str) -> str:
    """Toneless pinyin of a product name (ASR writes 金华业 for 精华液; the key is nearly the same)."""
    return pinyin_latin(pinyin_codes(normalize(name).text))


def _close(a: float | None, b: float | None, rel: float = 0.002) -> bool:
    """The same stated price (199 and 200 are different prices; 199 and 199.0 are not)."""
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b))


def same_product(a: PriceClaim, b: PriceClaim, config: PriceConfig) -> bool:
    """Whether two claims are about the same product, per `config.product`."""
    if a.product and b.product:
        from rapidfuzz import fuzz

        return fuzz.ratio(product_key(a.product), product_key(b.product)) >= config.product.threshold
    policy = config.product.unnamed
    if policy == "any":
        return True
    if policy == "never":
        return False
    pa = [p for p in (a.reference_price, a.current_price) if p is not None]
    pb = [p for p in (b.reference_price, b.current_price) if p is not None]
    return any(_close(x, y) for x in pa for y in pb)


def _product_matches_name(claim: PriceClaim, name: str, config: PriceConfig) -> bool:
    if not claim.product:
        return False
    from rapidfuzz import fuzz

    return fuzz.ratio(product_key(claim.product), product_key(name)) >= config.product.threshold


# --------------------------------------------------------------------------------------------------
# Checks


def paid_fraction(claim: PriceClaim) -> float | None:
    """Share of the reference the buyer pays (0.2 = 80% off), from whatever the claim states."""
    ref = claim.reference_price
    if ref and claim.current_price is not None:
        return claim.current_price / ref
    if claim.discount is not None:
        return claim.discount
    if ref and claim.reduction is not None and claim.reduction < ref:
        return (ref - claim.reduction) / ref
    return None


def _claim_json(c: PriceClaim) -> dict[str, Any]:
    return {
        "source": c.source,
        "start_s": round(c.start_s, 3),
        "end_s": round(c.end_s, 3),
        "text": c.text,
        "reference_price": c.reference_price,
        "reference_kind": c.reference_kind,
        "current_price": c.current_price,
        "current_kind": c.current_kind,
        "discount": c.discount,
        "reduction": c.reduction,
        "conditions": list(c.conditions),
        "product": c.product,
        "pressure": list(c.pressure),
        "basis": c.basis,
    }


def _historic_json(h: HistoricClaim, why: str) -> dict[str, Any]:
    c = h.claim
    return {
        "why": why,
        "ts": h.ts,
        "broadcast_id": h.broadcast_id,
        "stream_id": h.stream_id,
        "claim_id": h.claim_id,
        "start_s": round(c.start_s, 3),
        "end_s": round(c.end_s, 3),
        "text": c.text,
        "source": c.source,
        "reference_price": c.reference_price,
        "reference_kind": c.reference_kind,
        "current_price": c.current_price,
        "current_kind": c.current_kind,
        "product": c.product,
        "pressure": list(c.pressure),
        "alert_id": h.alert_id,
        "evidence_dir": h.evidence_dir,
    }


def _detection(
    rule: PriceRule,
    claim: PriceClaim,
    *,
    score: float,
    details: dict[str, Any],
    utterance: Utterance | None,
    matched: str | None = None,
    mode: str = "price",
    source: str | None = None,
) -> Detection:
    return Detection(
        rule_id=rule.id,
        category=CATEGORY,
        code=rule.code,
        severity=rule.severity,
        law=rule.law,
        source=source or claim.source,
        start_s=claim.start_s,
        end_s=claim.end_s,
        matched=matched or _claim_matched(claim),
        text=utterance.text if utterance is not None else claim.text,
        score=round(max(0.0, min(100.0, score)), 1),
        mode=mode,
        utterance_index=utterance.index if utterance is not None else None,
        claim=claim,
        details={"rule": rule.id, "description": rule.description, "claim": _claim_json(claim), **details},
    )


def _claim_matched(c: PriceClaim) -> str:
    parts = []
    if c.reference_price is not None:
        parts.append(f"{c.reference_kind or '参考价'} {_fmt(c.reference_price)}")
    if c.current_price is not None:
        parts.append(f"{c.current_kind or '现价'} {_fmt(c.current_price)}")
    if c.discount is not None:
        parts.append(f"{_fmt(round(c.discount * 10, 2))}折")
    if c.reduction is not None:
        parts.append(f"减 {_fmt(c.reduction)}")
    parts += list(c.pressure)
    return " / ".join(parts) or c.text


class PriceChecker:
    """Judges claims, one at a time, against plausibility and the stream's history.

    `history` may be None (no store: only the single-claim checks run). Not thread-safe: one checker
    per analysis worker; it remembers which earlier rise announcements it already reported.
    """

    def __init__(self, config: PriceConfig | None = None, history: PriceHistory | None = None) -> None:
        self.config = config or load_price_config()
        self.history = history
        self._reported_news: set[tuple[str | None, int | float | None]] = set()

    # -- public ------------------------------------------------------------------------------------

    def check(
        self,
        claim: PriceClaim,
        *,
        stream_id: str | None,
        claim_ts: float | None,
        utterance: Utterance | None = None,
        broadcast_id: str | None = None,
    ) -> list[Detection]:
        """price_fraud detections for `claim` (said at wall-clock `claim_ts` on `stream_id`)."""
        out: list[Detection] = []
        earlier: list[HistoricClaim] = []
        if self.history is not None and stream_id and claim_ts is not None:
            earlier = self._earlier(stream_id, claim_ts, broadcast_id)
        known: list[KnownPrice] = []
        if (
            self.history is not None
            and claim.product
            and claim.reference_price is not None
            and claim_ts is not None
        ):
            win = self.config.rules.reference_above_known_price.window_days * 86400
            known = [
                k
                for k in self.history.reference_prices(None, claim_ts - win)
                if k.ts <= claim_ts and _product_matches_name(claim, k.product, self.config)
            ]
        out += self._implausible(claim, utterance)
        out += self._unsupported(claim, utterance, earlier, known, claim_ts)
        if claim_ts is not None:
            out += self._recent_low(claim, utterance, earlier, claim_ts)
            out += self._raise_then_cut(claim, utterance, earlier, claim_ts)
            out += self._known(claim, utterance, known)
            out += self._pressure(claim, utterance, earlier, claim_ts)
            out += self._rise_news(claim, utterance, earlier, claim_ts)
        return out

    # -- helpers -----------------------------------------------------------------------------------

    def _earlier(self, stream_id: str, claim_ts: float, broadcast_id: str | None) -> list[HistoricClaim]:
        assert self.history is not None
        r = self.config.rules
        longest = max(
            r.reference_above_recent_low.window_days,
            r.first_raise_then_cut.window_days,
            r.pressure_repeated.window_days,
            r.fake_rise_news.window_days,
        )
        rows = self.history.claims_for(
            stream_id, claim_ts - longest * 86400, claim_ts - self.config.min_gap_s
        )
        if self.config.exclude_same_broadcast and broadcast_id is not None:
            rows = [h for h in rows if h.broadcast_id != broadcast_id]
        return rows

    def _within(self, earlier: Iterable[HistoricClaim], claim_ts: float, days: float) -> list[HistoricClaim]:
        lo = claim_ts - days * 86400
        return [h for h in earlier if h.ts >= lo]

    def _day(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, ZoneInfo(self.config.timezone)).date().isoformat()

    # -- single-claim checks -----------------------------------------------------------------------

    def _implausible(self, claim: PriceClaim, utt: Utterance | None) -> list[Detection]:
        rule = self.config.rules.implausible_discount
        if not rule.enabled:
            return []
        if rule.require_reference and claim.reference_price is None:
            return []
        paid = paid_fraction(claim)
        if paid is None or paid <= 0 or paid >= 1:
            return []
        off = 1 - paid
        if off <= rule.max_off_ratio + 1e-9:
            return []
        score = 70 + 30 * min(1.0, (off - rule.max_off_ratio) / max(1e-9, 1 - rule.max_off_ratio) * 2)
        return [
            _detection(
                rule,
                claim,
                score=score,
                utterance=utt,
                details={"off_ratio": round(off, 4), "max_off_ratio": rule.max_off_ratio},
            )
        ]

    def _unsupported(
        self,
        claim: PriceClaim,
        utt: Utterance | None,
        earlier: list[HistoricClaim],
        known: list[KnownPrice],
        claim_ts: float | None,
    ) -> list[Detection]:
        rule = self.config.rules.unsupported_reference
        ref = claim.reference_price
        if not rule.enabled or ref is None or claim.reference_kind not in rule.kinds or claim.basis:
            return []
        paid = paid_fraction(claim)
        if paid is None:
            return []
        inconsistent = paid >= 1
        if inconsistent and not rule.flag_inconsistent:
            return []
        if not inconsistent and 1 - paid < rule.min_off_ratio:
            return []
        # A reference the stream's own recent prices or an imported price back up is not unsupported.
        tol = self.config.rules.reference_above_recent_low.tolerance
        if claim_ts is not None:
            recent = [
                h
                for h in self._within(
                    earlier, claim_ts, self.config.rules.reference_above_recent_low.window_days
                )
                if h.claim.current_price is not None and same_product(claim, h.claim, self.config)
            ]
            if recent and min(h.claim.current_price for h in recent if h.claim.current_price) >= ref * (
                1 - tol
            ):
                return []
        if known and min(k.price for k in known) >= ref * (
            1 - self.config.rules.reference_above_known_price.tolerance
        ):
            return []
        details: dict[str, Any] = {
            "off_ratio": None if inconsistent else round(1 - paid, 4),
            "inconsistent": inconsistent,
        }
        if inconsistent:
            details["note"] = "reference not above the current price: check the recording (misheard number?)"
        return [_detection(rule, claim, score=50 if inconsistent else 60, utterance=utt, details=details)]

    def _known(self, claim: PriceClaim, utt: Utterance | None, known: list[KnownPrice]) -> list[Detection]:
        rule = self.config.rules.reference_above_known_price
        ref = claim.reference_price
        if not rule.enabled or ref is None or not known:
            return []
        low = min(k.price for k in known)
        if ref <= low * (1 + rule.tolerance):
            return []
        ev = sorted(known, key=lambda k: (k.price, -k.ts))[: rule.max_evidence]
        return [
            _detection(
                rule,
                claim,
                score=90,
                utterance=utt,
                details={
                    "known_low": low,
                    "known_prices": [
                        {"product": k.product, "price": k.price, "ts": k.ts, "source": k.source} for k in ev
                    ],
                },
            )
        ]

    # -- history checks ----------------------------------------------------------------------------

    def _priced(self, claim: PriceClaim, earlier: Iterable[HistoricClaim]) -> list[HistoricClaim]:
        return [
            h
            for h in earlier
            if h.claim.current_price is not None and same_product(claim, h.claim, self.config)
        ]

    def _recent_low(
        self, claim: PriceClaim, utt: Utterance | None, earlier: list[HistoricClaim], claim_ts: float
    ) -> list[Detection]:
        rule = self.config.rules.reference_above_recent_low
        ref = claim.reference_price
        if not rule.enabled or ref is None or claim.reference_kind not in rule.kinds:
            return []
        priced = self._priced(claim, self._within(earlier, claim_ts, rule.window_days))
        below = [
            h
            for h in priced
            if h.claim.current_price is not None and h.claim.current_price * (1 + rule.tolerance) < ref
        ]
        if not below:
            return []
        below.sort(key=lambda h: (h.claim.current_price, h.ts))
        low = below[0]
        assert low.claim.current_price is not None
        return [
            _detection(
                rule,
                claim,
                score=95,
                utterance=utt,
                details={
                    "recent_low": low.claim.current_price,
                    "window_days": rule.window_days,
                    "contradicts": [
                        _historic_json(
                            h,
                            f"stated {h.claim.current_kind or '现价'} {_fmt(h.claim.current_price or 0)}"
                            f" below the claimed {claim.reference_kind} {_fmt(ref)}",
                        )
                        for h in below[: rule.max_evidence]
                    ],
                },
            )
        ]

    def _raise_then_cut(
        self, claim: PriceClaim, utt: Utterance | None, earlier: list[HistoricClaim], claim_ts: float
    ) -> list[Detection]:
        rule = self.config.rules.first_raise_then_cut
        ref = claim.reference_price
        if not rule.enabled or ref is None or claim.reference_kind not in rule.kinds:
            return []
        priced = self._priced(claim, self._within(earlier, claim_ts, rule.window_days))
        lows = [
            h
            for h in priced
            if h.claim.current_kind in rule.only_kinds
            and (h.claim.current_price or 0) * (1 + rule.tolerance) < ref
        ]
        if not lows:
            return []
        recent_days = self.config.rules.reference_above_recent_low.window_days
        recent_on = self.config.rules.reference_above_recent_low.enabled
        for low in sorted(lows, key=lambda h: (h.claim.current_price, h.ts)):
            raises = [
                h
                for h in priced
                if h.ts > low.ts and (h.claim.current_price or 0) >= ref * (1 - rule.tolerance)
            ]
            old = claim_ts - low.ts > recent_days * 86400
            if not raises and not (old or not recent_on):
                continue  # the 7-day check already covers an unexplained recent low
            contradicts = [
                _historic_json(low, f"sold as {low.claim.current_kind} {_fmt(low.claim.current_price or 0)}")
            ]
            contradicts += [
                _historic_json(h, f"raised to {_fmt(h.claim.current_price or 0)}")
                for h in raises[: rule.max_evidence - 1]
            ]
            return [
                _detection(
                    rule,
                    claim,
                    score=90 if raises else 80,
                    utterance=utt,
                    details={
                        "raise_observed": bool(raises),
                        "earlier_only_price": low.claim.current_price,
                        "window_days": rule.window_days,
                        "contradicts": contradicts,
                    },
                )
            ]
        return []

    def _pressure(
        self, claim: PriceClaim, utt: Utterance | None, earlier: list[HistoricClaim], claim_ts: float
    ) -> list[Detection]:
        rule = self.config.rules.pressure_repeated
        tags = [t for t in claim.pressure if t in rule.tags]
        if not rule.enabled or not tags:
            return []
        today = self._day(claim_ts)
        out: list[Detection] = []
        for tag in tags:
            same = [
                h
                for h in self._within(earlier, claim_ts, rule.window_days)
                if tag in h.claim.pressure
                and (not rule.match_product or same_product(claim, h.claim, self.config))
            ]
            by_day: dict[str, HistoricClaim] = {}
            for h in same:
                d = self._day(h.ts)
                if d != today:
                    by_day[d] = h  # the latest of each day
            if len(by_day) + 1 < rule.min_days:
                continue
            ev = sorted(by_day.values(), key=lambda h: -h.ts)[: rule.max_evidence]
            out.append(
                _detection(
                    rule,
                    claim,
                    score=85,
                    utterance=utt,
                    matched=tag,
                    details={
                        "tag": tag,
                        "days": sorted([*by_day, today]),
                        "contradicts": [
                            _historic_json(h, f"also said '{tag}' on {self._day(h.ts)}") for h in ev
                        ],
                    },
                )
            )
        return out

    def _rise_news(
        self, claim: PriceClaim, utt: Utterance | None, earlier: list[HistoricClaim], claim_ts: float
    ) -> list[Detection]:
        rule = self.config.rules.fake_rise_news
        if not rule.enabled or claim.current_price is None:
            return []
        window = self._within(earlier, claim_ts, rule.window_days)
        news = [h for h in window if "涨价" in h.claim.pressure and claim_ts - h.ts >= rule.min_elapsed_s]
        for nh in sorted(news, key=lambda h: -h.ts):
            key = (nh.broadcast_id, nh.claim_id if nh.claim_id is not None else nh.ts)
            if key in self._reported_news:
                continue
            then = [
                h
                for h in window
                if h.broadcast_id == nh.broadcast_id
                and abs(h.ts - nh.ts) <= rule.price_near_s
                and h.claim.current_price is not None
                and same_product(claim, h.claim, self.config)
            ]
            if nh.claim.current_price is not None and (
                not claim.product or not nh.claim.product or same_product(claim, nh.claim, self.config)
            ):
                then.append(nh)
            if not then:
                continue
            ref_then = min(then, key=lambda h: abs(h.ts - nh.ts))
            p0 = ref_then.claim.current_price
            if p0 is None or claim.current_price > p0 * (1 + rule.tolerance):
                continue
            self._reported_news.add(key)
            contradicts = [_historic_json(nh, "announced a price rise")]
            if ref_then is not nh:
                contradicts.append(_historic_json(ref_then, f"price when the rise was announced: {_fmt(p0)}"))
            return [
                _detection(
                    rule,
                    claim,
                    score=90,
                    utterance=utt,
                    details={
                        "announced_ts": nh.ts,
                        "price_then": p0,
                        "price_now": claim.current_price,
                        "contradicts": contradicts,
                    },
                )
            ]
        return []


# --------------------------------------------------------------------------------------------------
# Speech against screen


def cross_check(
    speech_claims: Sequence[PriceClaim],
    screen_claims: Sequence[PriceClaim],
    window_s: float | None = None,
    *,
    config: PriceConfig | None = None,
) -> list[Detection]:
    """Spoken and on-screen prices of the same moment that disagree.

    Detections are placed on the *speech* claim (source "speech", mode "cross"): the host's words are
    what a reviewer listens to, and the caption's claim rides in `details["screen"]`. Current prices are
    compared, and reference prices when both state one.
    """
    cfg = config or load_price_config()
    rule = cfg.rules.cross_mismatch
    if not rule.enabled:
        return []
    win = rule.window_s if window_s is None else window_s
    out: list[Detection] = []
    for sp in speech_claims:
        for sc in screen_claims:
            if sp.start_s > sc.end_s + win or sp.end_s < sc.start_s - win:
                continue
            diffs = []
            for name in ("current_price", "reference_price"):
                a, b = getattr(sp, name), getattr(sc, name)
                if a is not None and b is not None and abs(a - b) > rule.tolerance * max(a, b):
                    diffs.append({"field": name, "speech": a, "screen": b})
            if not diffs or sp.current_price is None or sc.current_price is None:
                continue
            if sp.product and sc.product and not same_product(sp, sc, cfg):
                continue
            out.append(
                _detection(
                    rule,
                    sp,
                    score=75,
                    utterance=None,
                    mode="cross",
                    source="speech",
                    details={
                        "screen": _claim_json(sc),
                        "differences": diffs,
                        "contradicts": [
                            {
                                "why": "on screen at the same moment",
                                "source": "screen",
                                "start_s": sc.start_s,
                                "end_s": sc.end_s,
                                "text": sc.text,
                                "current_price": sc.current_price,
                                "reference_price": sc.reference_price,
                            }
                        ],
                    },
                )
            )
            break
    return out


# --------------------------------------------------------------------------------------------------
# One broadcast at a time (what the scan pipeline and the live monitor call)


@dataclass(frozen=True, slots=True)
class TimedClaim:
    """A claim of this broadcast with its wall-clock time (None when the recording has no start time)."""

    claim: PriceClaim
    ts: float | None
    utterance_index: int


@dataclass(slots=True)
class PriceAnalysis:
    claims: list[TimedClaim] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)


def analyze_utterances(
    speech: Sequence[Utterance],
    screen: Sequence[Utterance],
    checker: PriceChecker,
    *,
    stream_id: str | None,
    started_ts: float | None,
    broadcast_id: str | None,
) -> PriceAnalysis:
    """Extract every claim of a broadcast, check each, and cross-check speech against the screen."""
    res = PriceAnalysis()
    by_source: dict[str, list[PriceClaim]] = {"speech": [], "screen": []}
    for utt in [*speech, *screen]:
        if utt.meta.get("hallucination"):
            continue
        for c in extract_from_utterance(utt):
            ts = None if started_ts is None else started_ts + c.start_s
            res.claims.append(TimedClaim(c, ts, utt.index))
            by_source.setdefault(c.source, []).append(c)
            for d in checker.check(
                c, stream_id=stream_id, claim_ts=ts, utterance=utt, broadcast_id=broadcast_id
            ):
                res.detections.append(d)
    res.detections += cross_check(
        by_source["speech"], _dedupe_screen(by_source["screen"]), config=checker.config
    )
    return res


def _dedupe_screen(claims: list[PriceClaim]) -> list[PriceClaim]:
    """A caption read in many frames gives the same claim many times: keep one per run, spanning the run."""
    out: list[PriceClaim] = []
    for c in sorted(claims, key=lambda c: c.start_s):
        if out and out[-1].text == c.text and c.start_s <= out[-1].end_s + 2.0:
            out[-1] = replace(out[-1], end_s=max(out[-1].end_s, c.end_s))
        else:
            out.append(c)
    return out


class PriceDetector(Detector[PriceConfig]):
    """Detector type ``price``: claims of one utterance (speech or caption) through `PriceChecker`.

    The context's `stream_id` and, in `meta`, `started_ts` (wall-clock start of the broadcast) and
    `broadcast_id` enable the history checks; without them only the single-claim checks run. The
    history is injected (`store.prices.SqlPriceHistory` in the app); detectors never open the store.
    Speech/screen cross-checks need both sides of a broadcast and run in `analyze_utterances`.
    """

    type = "price"

    config_model = PriceConfig

    def __init__(self, config: PriceConfig | None = None, *, history: PriceHistory | None = None) -> None:
        super().__init__(config or load_price_config())
        self.checker = PriceChecker(self.config, history)

    def detect(self, context: DetectionContext) -> Iterable[Detection]:
        utt = context.utterance
        if utt is None or utt.meta.get("hallucination"):
            return []
        started = context.meta.get("started_ts")
        broadcast_id = context.meta.get("broadcast_id")
        out: list[Detection] = []
        for c in extract_from_utterance(utt):
            ts = None if started is None else float(started) + c.start_s
            out += self.checker.check(
                c,
                stream_id=context.stream_id or None,
                claim_ts=ts,
                utterance=utt,
                broadcast_id=None if broadcast_id is None else str(broadcast_id),
            )
        return out

    @classmethod
    def phrase_table(cls) -> PhraseTable:
        """Lines that flag on their own (no history), and price talk that must not."""
        return PhraseTable(
            should_flag=(
                "原价九百九十九,今天只要一百九十九",
                "专柜价两千八,我们秒杀价六百八十八",
                "市场价一千二,今天一折,只要一百二十元",
                "超市卖两百,我们只要一百",
                "划线价¥1,580 直播价¥198",
                "源价九百九十九今天只要一百九十九",
            ),
            should_not_flag=(
                "这件羽绒服的价格是三百五十九元,支持七天无理由退货",
                "满199减20 包邮",
                "这个杯子只要九块九包邮",
                "原价三百九,以官方旗舰店为准,今天一百九十九",
                "市场价两百,这里到手价一百八十",
                "今天是最后一天,明天恢复原价三百九",
                "第二件半价,第一件九十九元",
            ),
        )


def claim_fields() -> tuple[str, ...]:
    """Names of the PriceClaim fields a ClaimSpan carries (for tables and tests)."""
    return tuple(f.name for f in fields(ClaimSpan) if f.name not in ("start", "end", "matched"))
