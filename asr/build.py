"""`build_transcriber`: the one place a transcriber is built from configuration.

`backend: faster-whisper` (the default) builds `asr.transcriber.WhisperTranscriber`: the scan gets it as
configured, the live monitor with `live=` options that bound each decoding pass (see
app/monitor_config.py's `LiveAsrSection`). `backend: package.module:factory` builds a site's own
recognizer (`factory(cfg, live)`, e.g. a sherpa-onnx model it installed) and wraps it with the VAD gate
and the hallucination filter of asr/wrappers.py. Whatever is built meets `asr.types.Transcriber`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asr.config import AsrConfig
from asr.types import Transcriber

__all__ = ["LiveDecoding", "build_transcriber", "enable_batching"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveDecoding:
    """Live ASR's bounds on the model and each pass (sliding windows of a few seconds)."""

    trim_encoder: bool = True
    encoder_margin_s: float = 1.0
    encoder_min_s: float = 5.0
    max_new_tokens: int | None = None
    no_repeat_ngram_size: int = 0


class _WithOptions:
    """A faster-whisper model with extra decoding options on every call."""

    def __init__(self, model: Any, **options: Any) -> None:
        self._model = model
        self._options = options

    def transcribe(self, audio: Any, **kwargs: Any) -> Any:
        return self._model.transcribe(audio, **kwargs, **self._options)


def build_transcriber(cfg: AsrConfig, *, live: LiveDecoding | None = None) -> Transcriber:
    """The configured transcriber: for a scan (`live=None`), or the live monitor's one model."""
    if cfg.backend != "faster-whisper":
        return _site_backend(cfg, live)
    from asr.transcriber import WhisperTranscriber

    if live is None:
        return WhisperTranscriber(cfg)

    from asr.encoder import load_whisper_model
    from asr.errors import ModelError
    from asr.model import resolve_model
    from asr.transcriber import resolve_compute

    device, compute_type = resolve_compute(cfg)
    path = resolve_model(cfg)
    try:
        model = load_whisper_model(
            path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cfg.cpu_threads,
            trim_encoder=live.trim_encoder,
            margin_s=live.encoder_margin_s,
            min_context_s=live.encoder_min_s,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load Whisper model {path}: {exc}") from exc
    logger.info(
        "live ASR: Whisper model %s on %s (%s), beam %d, encoder %s",
        path,
        device,
        compute_type,
        cfg.beam_size,
        "trimmed to the audio" if live.trim_encoder else "over 30 s",
    )
    options: dict[str, Any] = {"max_new_tokens": live.max_new_tokens}
    if live.no_repeat_ngram_size:
        options["no_repeat_ngram_size"] = live.no_repeat_ngram_size
    return WhisperTranscriber(cfg, model=_WithOptions(model, **options))


def enable_batching(transcriber: Transcriber) -> Any:
    """Batch the CTranslate2 calls of `transcriber`'s threads across windows (asr/batching.py): the
    `BatchingWhisper` now under its model, or None when it is not a faster-whisper transcriber (a site
    backend decodes one window at a time)."""
    from asr.batching import install_batching
    from asr.transcriber import WhisperTranscriber

    if not isinstance(transcriber, WhisperTranscriber):
        return None
    model: Any = transcriber._model
    if isinstance(model, _WithOptions):
        model = model._model
    if not (hasattr(model, "model") and hasattr(model, "hf_tokenizer")):
        return None
    return install_batching(model)


def _site_backend(cfg: AsrConfig, live: LiveDecoding | None) -> Transcriber:
    """`backend: package.module:factory`: import it, build it, check it, wrap it."""
    import importlib

    from asr.errors import ModelError
    from asr.wrappers import wrap_backend

    module_name, _, attr = cfg.backend.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"asr backend {cfg.backend!r} cannot be imported: {exc}") from exc
    try:
        inner = factory(cfg, live)
    except Exception as exc:
        raise ModelError(f"asr backend {cfg.backend!r} failed to build: {exc!r}") from exc
    if not callable(getattr(inner, "transcribe", None)):
        raise ModelError(f"asr backend {cfg.backend!r} returned {type(inner).__name__}, which has no transcribe()")
    logger.info("ASR backend %s (%s), VAD gate %s", cfg.backend, type(inner).__name__, "on" if cfg.vad_filter else "off")
    return wrap_backend(inner, cfg)
