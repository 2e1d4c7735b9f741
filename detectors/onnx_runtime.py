"""Choosing onnxruntime's execution provider and CPU threads for the frame models (OCR, NudeNet).

Pure functions over the installed onnxruntime build; safe from any thread.
"""

from __future__ import annotations

import logging
from typing import Any

from detectors.video_config import OnnxConfig

__all__ = ["cuda_available", "providers_for", "session_options", "use_cuda"]

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_available() -> bool:
    """True when this onnxruntime build has the CUDA provider and sees a GPU."""
    import onnxruntime as ort

    return CUDA in ort.get_available_providers() and ort.get_device() == "GPU"


def use_cuda(cfg: OnnxConfig) -> bool:
    """Whether `cfg` resolves to CUDA here; device=cuda without CUDA is a configuration error."""
    if cfg.device == "cpu":
        return False
    available = cuda_available()
    if cfg.device == "cuda" and not available:
        raise RuntimeError(
            "device: cuda, but onnxruntime has no CUDA provider here (install onnxruntime-gpu, or set "
            "device: auto)"
        )
    return available


def providers_for(cfg: OnnxConfig) -> list[str | tuple[str, dict[str, Any]]]:
    """Provider list for `onnxruntime.InferenceSession`: CUDA first when it resolves to CUDA, CPU last.

    cuDNN's default convolution search (not the exhaustive one) because frame regions change shape
    from call to call and an exhaustive search would run again for every new shape.
    """
    if use_cuda(cfg):
        return [(CUDA, {"cudnn_conv_algo_search": "DEFAULT"}), CPU]
    return [CPU]


def session_options(cfg: OnnxConfig) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = cfg.inter_op_threads
    opts.log_severity_level = 3  # errors only: shape warnings would flood the log
    return opts
