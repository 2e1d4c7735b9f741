"""Normalization for matching: script, width, case, evasions, punctuation, pinyin codes."""

from __future__ import annotations

from detectors.normalize import normalize, pinyin_codes, pinyin_display, pinyin_latin


def test_traditional_becomes_simplified_and_punctuation_goes() -> None:
    n = normalize("這個價格是源價，全網最低價！")
    assert n.text == "这个价格是源价全网最低价"


def test_full_width_and_case_fold() -> None:
    assert normalize("ＡＢＣ１２３％ No.1").text == "abc123%第一"


def test_evasions_and_percent_words() -> None:
    assert normalize("蕞低价").text == "最低价"
    assert normalize("zui低价").text == "最低价"
    assert normalize("欢迎来到直啵间").text == "欢迎来到直播间"
    assert normalize("百分之百有效").text == "100%有效"
    assert normalize("百分百有效").text == "100%有效"
    # Latin words that merely contain the letters stay as they are.
    assert normalize("zuida brand").text == "zuidabrand"


def test_decimal_point_between_digits_is_kept() -> None:
    assert normalize("九块九, 9.9元。").text == "九块九9.9元"


def test_orig_index_maps_every_character_back() -> None:
    src = "全網，蕞低價 百分之百!"
    n = normalize(src)
    assert len(n.orig_index) == len(n.text)
    start = n.text.index("最低价")
    os_, oe = n.orig_span(start, start + 3)
    assert src[os_:oe] == "蕞低價"
    s100 = n.text.index("100%")
    os_, oe = n.orig_span(s100, s100 + 4)
    assert src[os_:oe] == "百分之百"


def test_breaks_record_removed_punctuation() -> None:
    n = normalize("不是的，这是最好的")
    cut = n.text.index("这")
    assert cut in n.breaks
    assert n.has_break(0, cut)
    assert not n.has_break(cut, len(n.text))


def test_homophones_share_pinyin_codes() -> None:
    assert pinyin_codes("源价") == pinyin_codes("原价")
    assert pinyin_codes("受时金") == pinyin_codes("瘦十斤")
    assert pinyin_codes("治理") == pinyin_codes("智力")
    assert pinyin_codes("原价") != pinyin_codes("原来")
    assert len(pinyin_codes("原价99元abc")) == len("原价99元abc")


def test_pinyin_latin_and_display() -> None:
    assert pinyin_latin(pinyin_codes("包治百病")) == "baozhibaibing"
    assert pinyin_display("最低价") == "zui di jia"
    assert pinyin_display("3天") == "san tian"


def test_latin_syllable_beside_chinese_matches_in_pinyin() -> None:
    n = normalize("jue对有效")
    assert pinyin_codes(n.text) == pinyin_codes("绝对有效")


def test_steps_are_recorded_for_explain() -> None:
    steps = dict(normalize("全網蕞低價！", record_steps=True).steps)
    assert steps["t2s"] == "全网蕞低价！"
    assert steps["variants"].endswith("最低价!")
    assert steps["strip punctuation"] == "全网最低价"


def test_rank_numerals_in_digits_meet_the_chinese_form() -> None:
    # 第 + one digit is written as the Chinese numeral, so 排名第1 meets rules written with 第一,
    # and an ordinal stays an ordinal (第1步 is 第一步, which every rule exempts).
    assert normalize("排名第1").text == "排名第一"
    assert normalize("第 1 名").text == "第一名"
    assert normalize("第1步先洗脸").text == "第一步先洗脸"
    assert normalize("第10名").text == "第10名"
    assert normalize("第1.5代").text == "第1.5代"
    assert normalize("Number One的品牌").text == "第一的品牌"
    assert normalize("TOP 1").text == "第一"
    # top10 / no.10 are not top1 / no.1
    assert normalize("TOP10榜单").text == "top10榜单"
    assert normalize("独1无2 唯1 壹流").text == "独一无二唯一一流"


def test_durations_in_ri_meet_tian_but_dates_do_not() -> None:
    assert normalize("7日无理由退货").text == "7天无理由退货"
    assert normalize("支持七日退换").text == "支持七天退换"
    assert normalize("十五日内可退").text == "十五天内可退"
    assert normalize("每日一次").text == "每天一次"
    assert normalize("本月7日发货").text == "本月7日发货"  # a date
    assert normalize("三月十一日").text == "三月十一日"
    assert normalize("100日元").text == "100日元"  # yen
    assert normalize("日本进口").text == "日本进口"


def test_number_forms_keep_the_index_map() -> None:
    for t in ("排名第1的品牌", "7日无理由", "第 1 名", "Number One的品牌", "不支持七日退换"):
        n = normalize(t)
        assert len(n.orig_index) == len(n.text)
        assert normalize(t, record_steps=True).text == n.text
