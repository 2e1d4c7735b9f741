"""AsrConfig: documented, strict, sensible defaults; device/compute auto-resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from asr.config import AsrConfig, VadConfig, default_cache_dir
from asr.transcriber import resolve_compute


@pytest.mark.parametrize("model", [AsrConfig, VadConfig])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    undocumented = [name for name, f in model.model_fields.items() if not f.description]
    assert undocumented == []


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="beam_sise"):
        AsrConfig.model_validate({"beam_sise": 3})
    with pytest.raises(ValidationError, match="min_silence"):
        AsrConfig.model_validate({"vad": {"min_silence": 100}})


def test_bad_regex_is_rejected_with_the_pattern() -> None:
    with pytest.raises(ValidationError, match=r"bad regular expression '字幕\('"):
        AsrConfig(hallucination_patterns=("字幕(",))


def test_defaults_target_simplified_mandarin() -> None:
    cfg = AsrConfig()
    assert cfg.model == "base" and cfg.language == "zh"
    assert cfg.initial_prompt and "简体" in cfg.initial_prompt
    assert cfg.word_timestamps and cfg.vad_filter and not cfg.condition_on_previous_text
    assert any("明镜与点点" in p for p in cfg.hallucination_phrases)


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert AsrConfig().cache_dir == tmp_path / "c"
    monkeypatch.delenv("LIVEWATCH_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "livewatch"


def test_compute_resolution() -> None:
    assert resolve_compute(AsrConfig(device="cpu")) == ("cpu", "int8")
    assert resolve_compute(AsrConfig(device="cuda")) == ("cuda", "float16")
    assert resolve_compute(AsrConfig(device="cpu", compute_type="float32")) == ("cpu", "float32")
    import ctranslate2

    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert resolve_compute(AsrConfig())[0] == expected
