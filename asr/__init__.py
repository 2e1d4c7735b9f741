"""ASR: faster-whisper transcription into words with times, normalized simplified Chinese."""

from asr.audio import load_audio
from asr.config import AsrConfig
from asr.errors import AsrError, MediaError, ModelError
from asr.model import resolve_model
from asr.transcriber import Transcriber, TranscriberStats, WhisperTranscriber, is_hallucination
from asr.types import Utterance, Word

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
