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


# pure-Latin entries that are names (a broadcaster's call sign), not English words a host would use
LATIN_NAMES = {"CCTV"}


@pytest.mark.parametrize(
    "ref", sorted(f"@{g}" for g in load_lexicons(lexicon_dirs([DEFAULT_RULES_DIR])).groups)
)
def test_sourced_groups_follow_the_lexicon_format(lexicons: Lexicons, ref: str) -> None:
    """Every shipped group loads, cites sources its lexicon lists, and holds no single characters,
    no pure-English entries (but names) and no duplicates (configs/lexicons/README.md)."""
    terms = lexicons.terms(ref)
    assert terms
    assert len(set(terms)) == len(terms), ref
    for t in terms:
        assert len(t) >= 2, (ref, t)
        assert t in LATIN_NAMES or not re.fullmatch(r"[A-Za-z0-9 .]+", t), (ref, t)
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


@pytest.mark.parametrize(
    "text",
    [
        "老人吃了腿脚利索了",  # efficacy told as a body outcome
        "喝完就不用打胰岛素了",
        "三高的朋友放心吃",
        "孩子长个子就靠它了",
        "这款蜂蜜能预防感冒",
        "这个牙膏抗病毒",
        "牙医推荐的牙膏",  # endorsement by a professional, hospital or media
        "三甲医院指定",
        "院士研发的配方",
        "央视推荐的品牌",
        "国家免检产品",
        "全网头一份",  # wording variants of absolute terms
        "今天力度最大",
        "史无前例的力度",
        "百分百有效",
        "效果永久保持",
        "吃了七日就好",
        "独一万的配方",  # ASR forms
        "全国排名地印",
        "一个月寿时金",
    ],
)
def test_false_claim_families_in_unseen_wording(rules: RuleSet, text: str) -> None:
    """Synthetic lines of the false_claim families in wording the rules' phrase tables do not
    quote (hints, 日 for 天, synonyms of 首/第一, ASR near-homophones) raise false_claim."""
    assert "false_claim" in _categories(rules, text), text


@pytest.mark.parametrize(
    "text",
    [
        "最佳食用期是开封后七天",  # usage tip
        "我们争取做到最好",  # aspiration
        "这款比我们上一代好",  # self-comparison
        "这款粉底在我们家是最强的 比我们自家那款遮得多",
        "敷完面膜最好用清水洗一下",
        "母乳是宝宝最好的食物",  # statutory notice
        "医生建议大家少吃盐",  # a doctor's general advice
        "本品有助于维持血糖健康水平 不能代替药物",  # approved health-food wording
        "本品不能代替药物",
        "天冷了注意预防感冒多穿衣服",
        "不要相信什么吃了就能长个子",
        "孩子长个子快衣服要买大一码",
        "这几个链接里三号的力度最大",
        "医院专用停车场",
        "杀菌率99%的消毒液 消字号",
    ],
)
def test_false_claim_lawful_near_misses_stay_silent(rules: RuleSet, text: str) -> None:
    """Lawful near-misses the 2023 执法指南 exempts (usage tips, aspiration, self-comparison), the
    statutory notices and plain health advice raise no false_claim alert."""
    assert "false_claim" not in _categories(rules, text), text


# ---- the structural families of the commerce packs (roles + acts + objects), written from the law's
# description of each kind: 电子商务法 第17条 / 反不正当竞争法(2025修订) 第9条第2款 (虚构交易、托、控评),
# 明码标价和禁止价格欺诈规定 第17、19条 (虚构原价、先涨后降、低价诱骗、虚假期限), 反不正当竞争法 第11条
# (内定、谎称有奖、最高奖超过五万元), 第12条 (商业诋毁), 消费者权益保护法 第25、26条, 禁止传销条例 第7条.
STRUCTURAL_RULES = [
    "fake_sales.a5.role_act_object",
    "price_fraud.b3.bait_structure",
    "price_fraud.b2.raise_then_discount_structural",
    "price_fraud.b3.recycled_last_call",
    "improper_prize.b5.insider_winner_structural",
    "defamation.a6.rival_harm_outcome",
]


def test_structural_rules_load_with_phrase_tables(rules: RuleSet) -> None:
    for rid in STRUCTURAL_RULES:
        r = rules.rule(rid)
        assert r.enabled and "structural" in r.tags, rid
        assert len(r.should_flag) >= 5 and len(r.should_not_flag) >= 4, rid


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("我們自己人刷的單 大家不用管", "fake_sales"),
        ("让运营多补几单把排名拉上来", "fake_sales"),
        ("公屏上的已拍都是我们的人在刷", "fake_sales"),
        ("评论区的好评一半都是我们小号打的", "fake_sales"),
        ("划线价是运营随手填的 没有参考意义", "price_fraud"),
        ("活动前先把价格提上去 然后再打七折", "price_fraud"),
        ("引流款一块钱 拍下默认是三十九块九的那个规格", "price_fraud"),
        ("说是最后三分钟 其实一直都有", "price_fraud"),
        ("抽奖就是走个形式 奖品早就给自己人了", "improper_prize"),
        ("今晚抽奖 头奖价值六万元现金", "improper_prize"),
        ("隔壁卖的茶叶都是染色的 喝了伤肝", "defamation"),
        ("一旦拍下概不退款", "consumer_rights"),
        ("入会费三千八 拉两个人进来就回本", "pyramid_selling"),
    ],
)
def test_commerce_families_fire_in_their_category(rules: RuleSet, text: str, category: str) -> None:
    assert category in _categories(rules, text), text


COMMERCE = {"fake_sales", "price_fraud", "improper_prize", "defamation", "consumer_rights", "pyramid_selling"}


@pytest.mark.parametrize(
    "text",
    [
        # denials, warnings, staff doing their jobs, 补单 as re-sending, 托 inside other words
        "我们家从来不请托 也没有气氛组",
        "托你们的福 今天卖得不错",
        "补单链接是给漏发的宝宝用的",
        "助理帮忙拍一下这个细节",
        "我们员工自己也买 因为真的好用",
        # a verifiable reference price, options priced separately, the price unchanged at checkout
        "划线价是品牌方的指导价 有依据",
        "默认选择的是最常用的规格 其他规格价格都标了",
        "拍下以后不用改价 直接就是到手价",
        # lawful draws under the cap, winners who are not insiders
        "抽奖一等奖是一部价值四千九的手机",
        "抽一位粉丝送五万块现金",
        "中奖的宝宝是新粉 恭喜",
        # factual comparison, the statutory return exceptions, no fee and no recruiting
        "和其他品牌比 我们的含量是百分之三十 人家是百分之二十 都写在配料表上",
        "定制照片的杯子做好了不能退 下单前确认好",
        "拆封后的数字商品不适用七天无理由",
        "想做代理的朋友 我们只看销售 不收入门费 不拉人头",
    ],
)
def test_commerce_near_misses_stay_silent(rules: RuleSet, text: str) -> None:
    got = _categories(rules, text) & COMMERCE
    assert not got, (text, got)


@pytest.mark.parametrize(
    "ref",
    [
        "@vulgar.abuse_dodges",
        "@vulgar.crude_names_cases",
        "@vulgar.private_contact_acts",
        "@vulgar_near_miss.quote_and_report",
    ],
)
def test_vulgar_groups_2026_12_03_follow_the_lexicon_format(lexicons: Lexicons, ref: str) -> None:
    """The vulgar groups added for new lines (abuse dodges, penalised crude names, private contact
    traded for gifts, and the quote-and-report near-misses) follow the lexicon format."""
    test_sourced_groups_follow_the_lexicon_format(lexicons, ref)


@pytest.mark.parametrize(
    ("text", "vulgar"),
    [
        # abuse dodges, slurs at rivals, gifts for private contact, crude names, body-shaming
        ("我去年买了个表 这都不买", True),
        ("隔壁那个主播就是个卖肉的", True),
        ("想要我联系方式的刷个嘉年华", True),
        ("老公温顺颗粒第二盒半价", True),
        ("胖子不配穿这个", True),
        ("你是不是有病啊问八百遍", True),
        # the lawful near-misses of each: rehab, butchers, customer service, feed, size tips, quotes
        ("这款康复椅适合脑瘫儿童训练", False),
        ("隔壁是个卖肉的摊位 猪肉很新鲜", False),
        ("下单的宝宝加客服微信领优惠券", False),
        ("母猪饲料的营养配比要看猪场规模", False),
        ("大象腿也能穿这条阔腿裤", False),
        ("有网友骂我傻逼 我已经举报了", False),
        ("根据广告法第九条 广告不得含有淫秽色情低俗内容", False),
    ],
)
def test_vulgar_families_2026_12_03(rules: RuleSet, text: str, vulgar: bool) -> None:
    assert ("vulgar" in _categories(rules, text)) is vulgar, text
