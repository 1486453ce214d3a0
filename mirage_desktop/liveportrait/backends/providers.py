"""ONNX Runtime providers and session options for the LivePortrait networks.

The same rules as :mod:`mirage_desktop.vision.onnx_session` (which the layers contract keeps out of reach of this
library): the asked GPU, not GPU 0; provider options; and a reason whenever a session did not get the provider it
asked for.
"""

from __future__ import annotations

from typing import Any

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DIRECTML = "DmlExecutionProvider"
SHORT_NAMES = {CPU: "cpu", CUDA: "cuda", TENSORRT: "tensorrt", DIRECTML: "directml"}


def session_options(threads: int = 0) -> Any:
    """Full graph optimisation, sequential, ``threads`` intra-op threads, no spinning (the cores are shared)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def device_index(device: str) -> int:
    """``cuda:1`` -> 1, ``cuda``/``directml`` -> 0: the GPU an ORT session must use (not always GPU 0)."""
    _, _, index = (device or "").partition(":")
    return int(index) if index.isdigit() else 0


def cuda_provider_options(device: str = "cuda", exhaustive: bool = False) -> dict[str, str]:
    """CUDA EP options: the asked GPU, an arena that grows by what is asked (not powers of two), and the cuDNN
    search. ``exhaustive`` only for fixed input shapes (LivePortrait's): every new shape re-runs an exhaustive search,
    and SCRFD sees many (384x640, 480x640, ...), so the vision models use the heuristic."""
    return {
        "device_id": str(device_index(device)),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "EXHAUSTIVE" if exhaustive else "HEURISTIC",
        "cudnn_conv_use_max_workspace": "1",
    }


def tensorrt_provider_options(device: str, cache_dir: str, fp16: bool) -> dict[str, str]:
    """TensorRT EP options: the asked GPU, fp16 when asked, engines and timing caches kept in ``cache_dir``."""
    return {
        "device_id": str(device_index(device)),
        "trt_fp16_enable": "1" if fp16 else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": cache_dir,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": cache_dir,
        "trt_builder_optimization_level": "3",
    }


def provider_fallback(requested: list[str] | list[tuple[str, dict[str, str]]], actual: list[str]) -> str | None:
    """None when the session got the first provider it asked for; else a reason naming the fix.

    ORT silently drops a provider whose libraries do not load (e.g. a CUDA 13 build on a CUDA 12 machine), so every
    caller compares what it asked for with ``session.get_providers()`` and shows this reason.
    """
    names = [p if isinstance(p, str) else p[0] for p in requested]
    if not names or (actual and actual[0] == names[0]):
        return None
    want, got = SHORT_NAMES.get(names[0], names[0]), SHORT_NAMES.get(actual[0], actual[0]) if actual else "nothing"
    fix = {
        CUDA: "install onnxruntime-gpu built for your CUDA major and the NVIDIA driver it needs (see README, GPU)",
        TENSORRT: "install TensorRT 10 (pip install tensorrt-cu12) or use --backend torch",
        DIRECTML: "install onnxruntime-directml (Windows) or use --device cpu",
    }.get(names[0], "check the onnxruntime package")
    return f"ONNX Runtime could not use {want} and runs on {got}: {fix}"
