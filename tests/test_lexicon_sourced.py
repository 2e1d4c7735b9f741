"""The sourced lexicon groups and the rule families built on them (vulgar, prohibited goods, food
safety, orientation), the 七日无理由 exceptions and the semantic stage's 释义 gate.

The lines here are synthetic, written from the law's description of each kind (positives and the
near-misses the law or guidance exempts); none is quoted from the labelled corpus.
"""

from __future__ import annotations

import re

import pytest

from detectors.config import DEFAULT_RULES_DIR, SemanticConfig
from detectors.engine import RuleSet
from detectors.lexicons import Lexicons, lexicon_dirs, load_lexicons
from detectors.semantic import LawfulWording

SOURCED_PACKS = {
    "vulgar_sourced": "vulgar",
    "prohibited_goods_sourced": "prohibited_goods",
    "food_safety_sourced": "food_safety",
    "orientation_sourced": "orientation",
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


@pytest.fixture(scope="module")
def lexicons() -> Lexicons:
    return load_lexicons(lexicon_dirs([DEFAULT_RULES_DIR]))


def _categories(rs: RuleSet, text: str) -> set[str]:
    return {rs.rule(h.rule_id).category for h in rs.match(text)[0]}


@pytest.mark.parametrize(
    "ref",
    [
        "@vulgar.crude_homophones",
        "@vulgar.double_meaning_cases",
        "@vulgar.body_hints",
        "@wildlife.key_protected_more",
        "@wildlife.yangtze_ban_fish",
        "@approved_claims.health_function_explanations",
    ],
)
def test_sourced_groups_follow_the_lexicon_format(lexicons: Lexicons, ref: str) -> None:
    """Every new group loads, cites sources its lexicon lists, and holds no single characters,
    no pure-English entries and no duplicates (configs/lexicons/README.md)."""
    terms = lexicons.terms(ref)
    assert terms
    assert len(set(terms)) == len(terms), ref
    for t in terms:
        assert len(t) >= 2, (ref, t)
        assert not re.fullmatch(r"[A-Za-z0-9 .]+", t), (ref, t)
    name, group = ref[1:].split(".")
    assert lexicons.groups[f"{name}.{group}"].sources


def test_farmed_and_brand_namesakes_stay_out_of_the_species_group(lexicons: Lexicons) -> None:
    """Species with lawful farming or a brand or toy of the same name are left out of the group the
    trade rule fires on (梅花鹿 antler, 金丝猴 sweets, 河狸家, 鸳鸯锅, 豹猫 the cat breed)."""
    names = set(lexicons.terms("@wildlife.key_protected_more"))
    assert {"小灵猫", "中华鲎", "鲥鱼", "红点颏"} <= names
    assert not names & {"梅花鹿", "马鹿", "金丝猴", "河狸", "鸳鸯", "豹猫", "乌龟", "麋鹿"}


def test_farmed_food_animals_stay_out_of_every_wildlife_group(lexicons: Lexicons) -> None:
    """Farmed table animals and their plain names never enter a species group: 牛蛙, 鸡, 鹧鸪 (farmed),
    养殖鲟鳇鱼, 唐鱼 (aquarium), and the namesakes 金猫 (招财猫), 紫貂 (farmed fur), 金雕 (gold carving)."""
    names: set[str] = set()
    for g in ("key_protected", "key_protected_more", "sanyou_terrestrial", "yangtze_ban_fish"):
        names |= set(lexicons.terms(f"@wildlife.{g}"))
    farmed = {"牛蛙", "鸡", "鸭", "鹅", "土鸡", "鹌鹑", "肉鸽", "鸽子", "乌龟", "甲鱼", "中华鳖", "鹧鸪", "鳇鱼",
              "唐鱼", "哲罗鲑", "细鳞鲑", "金猫", "紫貂", "金雕", "梅花鹿", "蓝孔雀", "鸵鸟", "兔子", "山鸡"}
    assert not names & farmed


def test_sourced_packs_load_in_their_categories(rules: RuleSet) -> None:
    """Each sourced pack loads, holds rules of its category only, and every rule carries its own
    phrase table (positives and near-misses) for `livewatch rules test`."""
    for pack, category in SOURCED_PACKS.items():
        mine = [r for r in rules.rules if r.pack == pack]
        assert mine, pack
        for r in mine:
            assert r.category == category, r.id
            assert r.id.startswith(category + "."), r.id
            assert len(r.should_flag) >= 2 and len(r.should_not_flag) >= 2, r.id


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # vulgar: crude homophones, penalised double meanings, body word + eating act, looks insults
        ("特么这个价格也太狠了", "vulgar"),
        ("吃我下面好不好", "vulgar"),
        ("坚持喝一个月喝出事业线", "vulgar"),
        ("就你这长相也配买这个", "vulgar"),
        ("刷个嘉年华我就穿低胸的", "vulgar"),
        # prohibited goods: listed species + trade act, Yangtze ban catch, tobacco codes, cheats
        ("小灵猫香囊一个三百包邮", "prohibited_goods"),
        ("江刀今天刚到一斤九百", "prohibited_goods"),
        ("焦油量十毫克的口粮老铁拍", "prohibited_goods"),
        ("遥控骰子想开几点开几点", "prohibited_goods"),
        # food safety: infant-formula label claims, solid drinks sold as formula
        ("一段奶粉进口奶源宝宝更聪明", "food_safety"),
        ("过敏宝宝把这个固体饮料当奶粉喝", "food_safety"),
        # orientation: landmark images, military goods, medals, 特供 by itself
        ("瓶身印着天安门城楼图案", "orientation"),
        ("部队配发的作训服正品", "orientation"),
        ("特供的大米外面买不到", "orientation"),
    ],
)
def test_kinds_fire_in_their_category(rules: RuleSet, text: str, category: str) -> None:
    assert category in _categories(rules, text), text


@pytest.mark.parametrize(
    "text",
    [
        # anatomy, fruit and sizes
        "这款葡萄果肉丰满每天吃一串",
        "胸围八十五的选大一码",
        "下面给大家介绍第二款",
        "我靠自己的手艺吃饭",
        # farmed, sea-caught, warnings, look-alike goods
        "人工养殖的美国鲥鱼一条六十",
        "东海刀鱼有捕捞许可证",
        "这款幼猫猫粮一包包邮",
        "警方查获一批透视扑克",
        # statutory wording and warnings
        "婴儿最理想的食品是母乳",
        "本产品是固体饮料不能代替婴幼儿配方食品",
        # tourism, clothing styles, sports medals, channel versions
        "带孩子去天安门广场看升旗",
        "军旅风的工装外套",
        "马拉松完赛奖牌包邮",
        "这是电商特供款",
    ],
)
def test_near_misses_stay_silent_in_the_new_categories(rules: RuleSet, text: str) -> None:
    got = _categories(rules, text) & set(SOURCED_PACKS.values())
    assert not got, (text, got)


@pytest.mark.parametrize(
    "text",
    [
        "内衣一经拆封不予退换",
        "根据规定以下商品不支持七天无理由退货",
        "签收超过七天不支持退货",
        "赠品不支持退换",
    ],
)
def test_statutory_return_exceptions_are_not_refusals(rules: RuleSet, text: str) -> None:
    """网络购买商品七日无理由退货暂行办法 第6-8条: opened goods that affect health, the exception list
    itself, goods past the seven days or no longer 完好 are not a refusal of 七天无理由."""
    assert "consumer_rights" not in _categories(rules, text)


@pytest.mark.parametrize("text", ["本店商品一律不退不换", "直播间的东西拍了就不能退"])
def test_blanket_refusals_still_fire(rules: RuleSet, text: str) -> None:
    assert "consumer_rights" in _categories(rules, text)


def test_semantic_gate_reads_the_function_explanations() -> None:
    """The 保健功能释义 sentences restate the approved function neutrally; the default gate holds
    them, and a disease claim is not held."""
    assert "@approved_claims.health_function_explanations" in SemanticConfig().lawful_wording
    gate = LawfulWording(["@approved_claims.health_function_explanations"])
    assert gate.holds("有科学研究表明，补充适宜的物质有助于改善免疫力。")
    assert gate.holds("补充相关物质不能使人过目不忘")
    assert not gate.holds("喝了这个茶高血压就能治好")
