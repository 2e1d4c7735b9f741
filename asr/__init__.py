"""ASR: faster-whisper transcription into words with times, normalized simplified Chinese.

The names below are imported lazily (PEP 562), as `detectors` does, so that `import asr.types` (what
the stages to the right need) does not load PyAV, NumPy and faster-whisper, and `livewatch rules
check` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asr.audio import load_audio
    from asr.config import AsrConfig
    from asr.errors import AsrError, MediaError, ModelError
    from asr.model import resolve_model
    from asr.transcriber import TranscriberStats, WhisperTranscriber, is_hallucination
    from asr.types import Transcriber, Utterance, Word

__all__ = [
    "AsrConfig",
    "AsrError",
    "MediaError",
    "ModelError",
    "Transcriber",
    "TranscriberStats",
    "Utterance",
    "WhisperTranscriber",
    "Word",
    "is_hallucination",
    "load_audio",
    "resolve_model",
]

_LAZY = {
    "load_audio": "asr.audio",
    "AsrConfig": "asr.config",
    "AsrError": "asr.errors",
    "MediaError": "asr.errors",
    "ModelError": "asr.errors",
    "resolve_model": "asr.model",
    "Transcriber": "asr.types",
    "TranscriberStats": "asr.transcriber",
    "WhisperTranscriber": "asr.transcriber",
    "is_hallucination": "asr.transcriber",
    "Utterance": "asr.types",
    "Word": "asr.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
