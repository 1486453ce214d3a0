"""ONNX Runtime sessions for the vision models: which execution providers to ask for, and the session options."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

@functools.lru_cache(maxsize=1)
def _cuda_driver_present() -> bool:
    """True when the NVIDIA driver library loads; without it asking ORT for CUDA only logs errors."""
    if sys.platform == "darwin":
        return False
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", ctypes.util.find_library("cuda") or ""]
    for name in filter(None, names):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def choose_providers(device: str = "auto") -> list[str]:
    """Execution providers to ask for: CUDA first when onnxruntime-gpu and a driver are there, CPU always last."""
    import onnxruntime as ort

    device = (device or "auto").lower()
    if device == "cpu":
        return [CPU]
    if CUDA in ort.get_available_providers() and _cuda_driver_present():
        preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from pip wheels (onnxruntime >= 1.21)
        if callable(preload):
            try:
                preload()
            except Exception as exc:  # noqa: BLE001 - missing wheels: ORT still looks on the library path
                logger.debug("onnxruntime.preload_dlls failed: %s", exc)
        return [CUDA, CPU]
    if device.startswith("cuda"):
        logger.warning("Device %r asked for, but onnxruntime cannot use CUDA here; the vision models run on the CPU", device)
    return [CPU]


def session_options(threads: int = 0) -> onnxruntime.SessionOptions:
    """Full graph optimisation, one sequential executor, intra-op threads = ``threads`` (0: physical cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    # No busy-waiting between runs: spinning threads steal the cores that torch (LivePortrait on a CPU), the
    # encoder and the GUI need. Measured on the 2-core machine under load: 159 ms vs 218 ms per 720p frame.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
