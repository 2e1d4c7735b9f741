"""Whisper's encoder over the audio a pass holds, not over 30 s of padding.

Whisper was trained on 30 s inputs, and faster-whisper pads every window's log-mel features to 3000
frames before encoding, so a live pass over 4 s of audio pays for 30 s of encoder: about 0.5 s of a
1 s pass on two CPU cores (bench/bench_live_asr.py). CTranslate2's encoder accepts fewer frames
(whisper.cpp's `audio_ctx` does the same), and the cost falls roughly with the square of the length:
10 s of context encodes in ~0.06 s. `ContextTrimmedWhisper` cuts the zero padding that
`pad_or_trim` appended, keeping the audio plus `margin_s` of padding (the model expects to see where
the audio stops) and at least `min_context_s`, rounded up to whole `step_s` so the few lengths that
occur reuse CTranslate2's buffers.

The padding is recognized by value: faster-whisper pads with exact zeros, and a real log-mel column
is never all zeros (values are clipped to 8 decades below the window's maximum and shifted, so
digital silence gives -1.5, not 0).

Threading: as faster-whisper's `WhisperModel`: one caller at a time (the ASR worker that owns it).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

__all__ = ["FULL_FRAMES", "load_whisper_model", "trimmed_frames"]

logger = logging.getLogger(__name__)

FULL_FRAMES = 3000  # 30 s at Whisper's 10 ms hop
_FRAMES_PER_S = 100


def trimmed_frames(features: np.ndarray, *, margin_s: float, min_context_s: float, step_s: float) -> int:
    """How many leading frames of `features` (n_mels × frames, or batch × n_mels × frames) to encode.

    Pure: the last frame that is not all-zero padding, plus the margin, rounded up to `step_s`, at
    least `min_context_s`, at most the frames given.
    """
    total = int(features.shape[-1])
    cols = np.any(features != 0, axis=tuple(range(features.ndim - 1)))
    nonzero = np.flatnonzero(cols)
    content = int(nonzero[-1]) + 1 if nonzero.size else 0
    step = max(1, round(step_s * _FRAMES_PER_S))
    want = content + round(margin_s * _FRAMES_PER_S)
    want = math.ceil(want / step) * step
    want = max(want, round(min_context_s * _FRAMES_PER_S))
    return min(total, want)


def load_whisper_model(
    path: str,
    *,
    device: str,
    compute_type: str,
    cpu_threads: int = 0,
    trim_encoder: bool = False,
    margin_s: float = 1.0,
    min_context_s: float = 5.0,
    step_s: float = 1.0,
) -> Any:
    """A faster-whisper `WhisperModel`; with `trim_encoder`, one that encodes only the audio it holds.

    Raises what `WhisperModel` raises (RuntimeError, ValueError, OSError) when the model cannot load.
    """
    from faster_whisper import WhisperModel

    if not trim_encoder:
        return WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)

    class ContextTrimmedWhisper(WhisperModel):  # type: ignore[misc]
        """`WhisperModel` whose `encode` drops the zero padding beyond the audio (see module doc)."""

        def encode(self, features: np.ndarray) -> Any:
            n = trimmed_frames(features, margin_s=margin_s, min_context_s=min_context_s, step_s=step_s)
            if n < features.shape[-1]:
                features = np.ascontiguousarray(features[..., :n])
            return super().encode(features)

    logger.debug(
        "Whisper encoder trimmed to the audio (+%.1f s, at least %.1f s, steps of %.1f s)",
        margin_s,
        min_context_s,
        step_s,
    )
    return ContextTrimmedWhisper(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
