"""ONNX Runtime sessions for the vision models: which execution providers to ask for, and the session options."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mirage_desktop.os_support import nvidia_driver_present

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DIRECTML = "DmlExecutionProvider"

#: provider -> a short name for reasons and /health
SHORT_NAMES = {CPU: "cpu", CUDA: "cuda", TENSORRT: "tensorrt", DIRECTML: "directml"}

#: What a session asks ORT for: a provider's name, or its name with its options.
Provider = str | tuple[str, dict[str, str]]


def choose_providers(device: str = "auto") -> list[str]:
    """Execution providers to ask for: CUDA first when onnxruntime-gpu and a driver are there, CPU always last."""
    import onnxruntime as ort

    device = (device or "auto").lower()
    if device == "cpu":
        return [CPU]
    if CUDA in ort.get_available_providers() and nvidia_driver_present():
        preload_cuda_libraries()
        return [CUDA, CPU]
    if device.startswith("cuda"):
        logger.warning("Device %r asked for, but onnxruntime cannot use CUDA here; the vision models run on the CPU", device)
    return [CPU]


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip wheels (onnxruntime >= 1.21), as a session on CUDA needs them; a
    no-op on older releases. Missing wheels are fine: ORT still looks on the library path."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if callable(preload):
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - see above
            logger.debug("onnxruntime.preload_dlls failed: %s", exc)


def provider_chain(device: str = "auto") -> list[Provider]:
    """:func:`choose_providers` with the CUDA EP's options (the asked GPU, heuristic cuDNN search): what a vision
    session asks for."""
    return [(CUDA, cuda_provider_options(device)) if p == CUDA else p for p in choose_providers(device)]


def session_fallback(device: str, requested: Sequence[Provider], actual: list[str]) -> str | None:
    """Why a session on ``device`` did not get the provider it should have (None when it did).

    ``device`` "cuda[:i]" wants CUDA even when :func:`choose_providers` left it out (no onnxruntime-gpu, no driver):
    that is the silent CPU fallback a GPU user must hear about.
    """
    wanted: Sequence[Provider] = [CUDA] if (device or "").lower().startswith("cuda") else requested
    return provider_fallback(wanted, actual)


#: OrtArenaCfg's arena_extend_strategy: 1 is kSameAsRequested (0, the default, is kNextPowerOfTwo)
_SAME_AS_REQUESTED = 1
_shared_arena_lock = threading.Lock()
_shared_arena: bool | None = None  # None: not tried yet


def share_cpu_arena() -> bool:
    """Register one CPU arena for every session of this process, growing by what is asked; True when in place.

    Why: by default each session keeps an arena of its own that grows in powers of two, so on a CPU the LivePortrait
    sessions reserve far more than their runs use, and RSS creeps up for a long time as later runs touch those pages
    for the first time; one arena growing by what is asked holds about what the runs need, at the same speed
    (``benchmarks/ort_arena.py [--own]`` compares the two). Where this ORT cannot (older releases), each session
    keeps its own arena. Runs of different sessions at once (SCRFD on the capture thread, LivePortrait on its stage)
    still need their sum, as separate arenas did.
    """
    global _shared_arena
    with _shared_arena_lock:
        if _shared_arena is None:
            import onnxruntime as ort

            try:
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, _SAME_AS_REQUESTED, -1, -1))
                _shared_arena = True
            except Exception as exc:  # noqa: BLE001 - an ORT without the API: per-session arenas, as before
                logger.debug("onnxruntime cannot share one CPU arena: %s", exc)
                _shared_arena = False
        return _shared_arena


def session_options(threads: int = 0) -> onnxruntime.SessionOptions:
    """Full graph optimisation, one sequential executor, intra-op threads = ``threads`` (0: physical cores), the
    process's one CPU arena (:func:`share_cpu_arena`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if share_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    # No busy-waiting between runs: spinning threads steal the cores that torch (LivePortrait on a CPU), the
    # encoder and the GUI need, so where cores are few and shared every frame gets slower (a third at 720p).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class SerialSession:
    """An ONNX Runtime session whose runs take turns, shared by the frame loop and the control thread.

    Why: ORT's arenas (the CPU one, the CUDA one) grow to the peak of all the runs in flight on a session and keep
    it. One overlap of an avatar's preparation (SCRFD on the portrait, the landmark models, M) with the frame loop's
    runs left tens of MB behind for good. Taking turns bounds each arena at one run's peak. Uncontended, the lock
    costs well under a microsecond against runs of milliseconds; disabling the CPU arena instead slows every run (its
    large blocks are returned and faulted in again each time).
    """

    __slots__ = ("_lock", "_session")

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._lock = threading.Lock()

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        with self._lock:
            return self._session.run(output_names, feeds)

    def run_with_iobinding(self, binding: onnxruntime.IOBinding) -> None:
        with self._lock:
            self._session.run_with_iobinding(binding)

    def io_binding(self) -> onnxruntime.IOBinding:
        return self._session.io_binding()

    def get_inputs(self) -> list[Any]:
        return self._session.get_inputs()

    def get_outputs(self) -> list[Any]:
        return self._session.get_outputs()

    def get_providers(self) -> list[str]:
        return self._session.get_providers()


def open_session(path: str, threads: int, providers: list[Any]) -> SerialSession:
    """A :class:`SerialSession` on ``path`` with :func:`session_options`; ORT's own errors pass through."""
    import onnxruntime as ort

    return SerialSession(ort.InferenceSession(str(path), session_options(threads), providers=providers))


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


def provider_fallback(requested: Sequence[Provider], actual: list[str]) -> str | None:
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
        TENSORRT: "install the TensorRT libraries for CUDA 13 (pip install tensorrt-cu13) or use --backend torch",
        DIRECTML: "install onnxruntime-directml (Windows) or use --device cpu",
    }.get(names[0], "check the onnxruntime package")
    return f"ONNX Runtime could not use {want} and runs on {got}: {fix}"
