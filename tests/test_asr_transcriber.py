"""WhisperTranscriber around a scripted stand-in for faster-whisper: times, filtering, splitting, laziness.

The real model runs in test_asr_whisper.py; here a `ScriptedWhisper` (same `transcribe` signature)
returns fixed segments so each rule can be checked exactly. VAD (Silero) runs for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr import AsrConfig, WhisperTranscriber, load_audio
from asr.transcriber import _SpeechMap, _split_words

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
SR = 16_000


@dataclass(frozen=True)
class FWord:
    word: str
    start: float
    end: float
    probability: float = 0.9


@dataclass(frozen=True)
class FSeg:
    start: float
    end: float
    text: str
    words: list[FWord]
    avg_logprob: float = -0.2
    no_speech_prob: float = 0.01
    compression_ratio: float = 1.1
    temperature: float = 0.0


def seg(start: float, chars: str, step: float = 0.25, **kw: Any) -> FSeg:
    words = [
        FWord(c, round(start + i * step, 3), round(start + (i + 1) * step, 3)) for i, c in enumerate(chars)
    ]
    return FSeg(start, words[-1].end if words else start, chars, words, **kw)


@dataclass
class ScriptedWhisper:
    segments: list[FSeg]
    calls: list[dict[str, Any]] = field(default_factory=list)
    yielded: int = 0

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterator[FSeg], None]:
        self.calls.append({"samples": len(audio), **kwargs})

        def generate() -> Iterator[FSeg]:
            for s in self.segments:
                self.yielded += 1
                yield s

        return generate(), None


def no_vad(**kw: Any) -> AsrConfig:
    return AsrConfig(vad_filter=False, **kw)


def test_offset_normalization_and_indices() -> None:
    model = ScriptedWhisper([seg(0.5, "這個價格"), seg(3.0, "９９元")])
    t = WhisperTranscriber(no_vad(), model=model)
    utts = list(t.transcribe(np.zeros(5 * SR, dtype=np.float32), offset_s=600.0))
    assert [(u.index, u.text, u.raw_text) for u in utts] == [
        (0, "这个价格", "這個價格"),
        (1, "99元", "９９元"),
    ]
    assert utts[0].start_s == 600.5 and utts[0].end_s == 601.5
    assert [w.start_s for w in utts[1].words] == [603.0, 603.25, 603.5]
    assert all(u.text == "".join(w.text for w in u.words) for u in utts)


def test_hallucinations_are_dropped_and_counted() -> None:
    model = ScriptedWhisper(
        [
            seg(0.0, "今天只要九十九"),
            seg(2.0, "请不吝点赞订阅转发打赏支持明镜与点点栏目"),
            seg(4.0, "啊啊啊啊啊"),
            seg(6.0, "你好", no_speech_prob=0.9, avg_logprob=-1.4),
            seg(8.0, "好的好的", compression_ratio=2.8),
            seg(9.0, "下单"),
        ]
    )
    t = WhisperTranscriber(no_vad(), model=model)
    assert [u.text for u in t.transcribe(np.zeros(10 * SR, dtype=np.float32))] == ["今天只要九十九", "下单"]
    assert t.stats.segments == 6 and t.stats.kept == 2 and t.stats.dropped_total == 4
    assert t.stats.dropped == {"known": 1, "repetition": 1, "no_speech": 1, "compression_ratio": 1}


def test_decoding_is_lazy() -> None:
    model = ScriptedWhisper([seg(0.0, "一"), seg(1.0, "二"), seg(2.0, "三")])
    t = WhisperTranscriber(no_vad(), model=model)
    it = t.transcribe(np.zeros(4 * SR, dtype=np.float32))
    assert model.yielded == 0
    assert next(it).text == "一"
    assert model.yielded == 2  # a line is complete once the next one starts


def test_decoder_options_and_prompt() -> None:
    model = ScriptedWhisper([])
    cfg = no_vad(beam_size=3, hotwords="直播间")
    t = WhisperTranscriber(cfg, model=model)
    list(t.transcribe(np.zeros(SR, dtype=np.float32), prompt="上一句: 原价九百九十九"))
    call = model.calls[0]
    assert call["initial_prompt"] == f"{cfg.initial_prompt} 上一句: 原价九百九十九"
    assert call["language"] == "zh" and call["beam_size"] == 3 and call["hotwords"] == "直播间"
    assert call["word_timestamps"] is True and call["condition_on_previous_text"] is False
    assert call["vad_filter"] is False  # VAD is ours, so utterances can be cut at pauses


def test_bad_audio_shapes() -> None:
    model = ScriptedWhisper([seg(0.0, "一")])
    t = WhisperTranscriber(no_vad(), model=model)
    with pytest.raises(ValueError, match="mono"):
        list(t.transcribe(np.zeros((2, SR), dtype=np.float32)))
    assert list(t.transcribe(np.zeros(0, dtype=np.float32))) == []
    assert model.calls == []


def test_speech_map_assigns_the_pause_to_the_following_run() -> None:
    speech = _SpeechMap([(1.0, 3.0), (5.0, 6.0)], gap_s=0.6)  # joined: run0 0-2, gap 2-2.6, run1 2.6-3.6
    assert speech.run_of(0.5) == 0 and speech.to_audio(0.5, 0) == 1.5
    assert speech.run_of(2.3) == 1 and speech.to_audio(2.3, 1) == 5.0  # early first word: clamped
    assert speech.run_of(3.0) == 1 and speech.to_audio(3.0, 1) == pytest.approx(5.4)
    groups = _split_words([FWord("好", 1.5, 1.9), FWord("仅", 2.2, 2.7), FWord("剩", 2.7, 3.0)], speech, None)
    assert [(run, [w.word for w in g]) for run, g in groups] == [(0, ["好"]), (1, ["仅", "剩"])]
    assert groups[1][1][0].start == 5.0 and groups[1][1][1].end == pytest.approx(5.4)


def test_merge_mode_decodes_speech_only_and_splits_at_the_pause() -> None:
    a, b = load_audio(CORPUS / "clips" / "d01.flac"), load_audio(CORPUS / "clips" / "d03.flac")
    audio = np.concatenate([a, np.zeros(3 * SR, dtype=np.float32), b])
    len_a = len(a) / SR
    # A decoder segment whose words run across the join (as Whisper does when lines are glued):
    # 21 characters x 0.3 s from 0.5 s end past the first run (~4.4 s) in decoder time.
    model = ScriptedWhisper(
        [
            seg(0.5, "家人们这款面霜是全网最低价今天只要九十九元", step=0.3),
            seg(7.0, "我们这个保健茶", step=0.3),
        ]
    )
    t = WhisperTranscriber(AsrConfig(), model=model)
    utts = list(t.transcribe(audio, offset_s=100.0))
    decoded = model.calls[0]["samples"] / SR
    assert decoded < len(audio) / SR - 2.0, "the long pause was not removed before decoding"
    first_line_end, second_line_start = 100.0 + len_a, 100.0 + len_a + 3.0
    # Cut where the first run ends; the second segment continues the second run's line without a pause.
    assert [u.text for u in utts] == ["家人们这款面霜是全网最低价", "今天只要九十九元我们这个保健茶"]
    assert utts[0].end_s <= first_line_end + 0.25  # VAD pads runs by 200 ms
    assert utts[1].start_s >= second_line_start - 0.5


def test_a_pause_between_words_cuts_the_line_even_without_vad() -> None:
    words = [FWord(c, 0.2 * i, 0.2 * i + 0.2) for i, c in enumerate("市场价一千二")]
    words += [FWord(c, 2.5 + 0.2 * i, 2.7 + 0.2 * i) for i, c in enumerate("今天一折")]
    model = ScriptedWhisper([FSeg(0.0, 3.3, "市场价一千二今天一折", words)])
    utts = list(WhisperTranscriber(no_vad(), model=model).transcribe(np.zeros(4 * SR, dtype=np.float32)))
    assert [(u.text, u.start_s, u.end_s) for u in utts] == [
        ("市场价一千二", 0.0, 1.2),
        ("今天一折", 2.5, 3.3),
    ]
    model = ScriptedWhisper([FSeg(0.0, 3.3, "市场价一千二今天一折", words)])
    t = WhisperTranscriber(no_vad(split_pause_s=None), model=model)
    assert [u.text for u in t.transcribe(np.zeros(4 * SR, dtype=np.float32))] == ["市场价一千二今天一折"]


def test_a_decoding_loop_repeating_earlier_lines_is_cut_off() -> None:
    first = seg(0.0, "这款蜂蜜是纯天然的产地在云南", step=0.25)
    # The real line, then earlier text again, squeezed into an impossible speaking rate.
    real = "市场价一千二今天一折只要一百二"
    looped = "这款蜂蜜是纯天然的产地在云南" * 3
    words = [FWord(c, 10.0 + 0.25 * i, 10.25 + 0.25 * i) for i, c in enumerate(real)]
    words += [FWord(c, 13.75 + 0.01 * i, 13.76 + 0.01 * i) for i, c in enumerate(looped)]
    model = ScriptedWhisper([first, FSeg(10.0, 14.2, real + looped, words)])
    t = WhisperTranscriber(no_vad(), model=model)
    utts = list(t.transcribe(np.zeros(15 * SR, dtype=np.float32)))
    assert [u.text for u in utts] == ["这款蜂蜜是纯天然的产地在云南", real]
    assert t.stats.dropped["loop"] == 1


def test_host_repeating_a_line_at_normal_speed_is_kept() -> None:
    line = "库存只剩十件了大家抓紧时间"
    model = ScriptedWhisper([seg(0.0, line), seg(5.0, line + line)])
    utts = list(WhisperTranscriber(no_vad(), model=model).transcribe(np.zeros(15 * SR, dtype=np.float32)))
    assert [u.text for u in utts] == [line, line + line]


def test_a_line_whisper_split_at_a_comma_is_one_utterance() -> None:
    model = ScriptedWhisper(
        [seg(0.0, "这个精华液原价九百九十九元", step=0.2), seg(2.7, "今天直播间只要一百九十九元", step=0.2)]
    )
    utts = list(WhisperTranscriber(no_vad(), model=model).transcribe(np.zeros(7 * SR, dtype=np.float32)))
    assert [u.text for u in utts] == ["这个精华液原价九百九十九元今天直播间只要一百九十九元"]
    assert utts[0].meta["segments"] == 2 and utts[0].start_s == 0.0 and utts[0].end_s == pytest.approx(5.3)


def test_a_line_whisper_looped_on_is_kept_once() -> None:
    # Greedy live decoding: the line, then copies of it until the token limit (compression ratio 5).
    line = "这个减肥茶三天瘦十斤绝对不反弹"
    words = [FWord(c, 1.0 + 0.2 * i, 1.2 + 0.2 * i) for i, c in enumerate(line)]
    words += [FWord(c, 4.0 + 0.01 * i, 4.01 + 0.01 * i) for i, c in enumerate(line * 6)]
    model = ScriptedWhisper([FSeg(1.0, 5.0, line * 7, words, compression_ratio=5.2)])
    t = WhisperTranscriber(no_vad(), model=model)
    utts = list(t.transcribe(np.zeros(6 * SR, dtype=np.float32)))
    assert [u.text for u in utts] == [line]
    assert utts[0].end_s == pytest.approx(1.0 + 0.2 * len(line))
    assert t.stats.dropped["loop"] == 1


@pytest.mark.parametrize(
    "text", ["这边这边这边这边这边这边这边这边", "请" * 40, "1-2-3-4-4-4-4-4-4-4-4-4-4-4-4"]
)
def test_a_short_unit_looped_is_still_dropped_whole(text: str) -> None:
    words = [FWord(c, 0.5 + 0.02 * i, 0.52 + 0.02 * i) for i, c in enumerate(text)]
    model = ScriptedWhisper([FSeg(0.5, 2.0, text, words, compression_ratio=6.0)])
    t = WhisperTranscriber(no_vad(), model=model)
    assert list(t.transcribe(np.zeros(3 * SR, dtype=np.float32))) == []
    assert t.stats.dropped["compression_ratio"] == 1
