"""Provider choice for the frame models: CUDA when onnxruntime offers it, CPU otherwise."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from detectors.onnx_runtime import cuda_available, providers_for, session_options
from detectors.video_config import OnnxConfig


def test_cpu_is_used_when_asked_or_when_there_is_no_cuda() -> None:
    assert providers_for(OnnxConfig(device="cpu")) == ["CPUExecutionProvider"]
    if not cuda_available():
        assert providers_for(OnnxConfig(device="auto")) == ["CPUExecutionProvider"]
        with pytest.raises(RuntimeError, match="no CUDA provider"):
            providers_for(OnnxConfig(device="cuda"))


def test_cuda_comes_first_when_onnxruntime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU build of onnxruntime as this machine does not have one: what it reports, nothing more.
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "get_device", lambda: "GPU")
    auto = providers_for(OnnxConfig(device="auto"))
    assert auto[0] == ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT"})
    assert auto[-1] == "CPUExecutionProvider"
    assert providers_for(OnnxConfig(device="cpu")) == ["CPUExecutionProvider"]


def test_threads_are_limited_as_configured() -> None:
    opts = session_options(OnnxConfig(intra_op_threads=2, inter_op_threads=1))
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
