"""The hallucination filter on fake segments: what is dropped, why, and what real speech survives."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from asr.config import AsrConfig
from asr.transcriber import is_hallucination


@dataclass(frozen=True)
class Seg:
    text: str
    avg_logprob: float = -0.3
    no_speech_prob: float = 0.05
    compression_ratio: float = 1.2


CFG = AsrConfig()


@pytest.mark.parametrize(
    "text",
    [
        "这件衣服质量非常好,面料是纯棉的。",
        "家人们,这款面霜是全网最低价,今天只要99元。",
        "买买买",  # three repeats is ordinary host talk
        "谢谢观看我们直播间的家人们,今天的福利马上上链接",  # contains a sign-off, but is a real line
        "大家点赞关注一下,马上开始抽奖",
        "好",
    ],
)
def test_real_speech_is_kept(text: str) -> None:
    assert is_hallucination(Seg(text), CFG) is None


@pytest.mark.parametrize(
    "text",
    [
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "請不吝點贊訂閱轉發打賞支持明鏡與點點欄目",  # traditional script
        "字幕由Amara.org社区提供",
        "中文字幕由 Amara.org 社群提供",
        "字幕由 杨茜茜 提供",  # credit with a name not in the list: caught by pattern
        "优优独播剧场——YoYo Television Series Exclusive",
        "谢谢观看!",
        "謝謝觀看",
        "谢谢大家观看。",
        "明镜需要您的支持 欢迎收看订阅明镜",
        "请不吝点赞订阅转发打赏",  # truncated credit
    ],
)
def test_known_phrases_are_dropped(text: str) -> None:
    reason = is_hallucination(Seg(text), CFG)
    assert reason is not None
    assert reason.startswith(("known phrase", "credit pattern"))


def test_no_speech_needs_both_signals() -> None:
    assert is_hallucination(Seg("你好", no_speech_prob=0.9, avg_logprob=-1.5), CFG) is not None
    assert (is_hallucination(Seg("你好", no_speech_prob=0.9, avg_logprob=-1.5), CFG) or "").startswith(
        "no_speech"
    )
    # confident text over a high no-speech estimate is kept (Whisper's own rule)
    assert is_hallucination(Seg("你好", no_speech_prob=0.9, avg_logprob=-0.2), CFG) is None
    assert is_hallucination(Seg("你好", no_speech_prob=0.3, avg_logprob=-1.5), CFG) is None


def test_high_compression_ratio_is_a_loop() -> None:
    reason = is_hallucination(Seg("这个这个这个这个这个这个这个这个这个这个好", compression_ratio=3.1), CFG)
    assert reason == "compression_ratio 3.10"


@pytest.mark.parametrize(
    "text", ["啊啊啊啊", "的的的的的的的", "嗯。嗯。嗯。嗯。", "谢谢谢谢谢谢谢谢", "哈哈哈哈哈"]
)
def test_pure_repetition_is_dropped(text: str) -> None:
    reason = is_hallucination(Seg(text), CFG)
    assert reason is not None and reason.startswith("repetition")


def test_empty_and_punctuation_only_are_dropped() -> None:
    assert is_hallucination(Seg(""), CFG) == "empty"
    assert is_hallucination(Seg(" 。，！ "), CFG) == "empty"


def test_thresholds_come_from_config() -> None:
    strict = AsrConfig(compression_ratio_threshold=1.0)
    assert is_hallucination(Seg("普通的一句话", compression_ratio=1.2), strict) is not None
    no_lists = AsrConfig(hallucination_phrases=(), hallucination_patterns=())
    assert is_hallucination(Seg("谢谢观看"), no_lists) is None


def test_the_prompt_read_back_over_silence_is_dropped() -> None:
    # Seen with the real model on digital silence when VAD is off.
    assert is_hallucination(Seg("以下是普通话。"), CFG) == "prompt echo"
    assert is_hallucination(Seg("以下是普通话的句子,使用简体中文。"), CFG) == "prompt echo"
    assert is_hallucination(Seg("这款是普通话教材"), CFG) is None
    assert is_hallucination(Seg("以下是普通话。"), AsrConfig(initial_prompt=None)) is None
