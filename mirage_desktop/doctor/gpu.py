"""The NVIDIA driver and its GPUs as NVML (nvidia-ml-py) reports them, and which GPU line that driver runs.

NVML ships with the driver itself (``libnvidia-ml``, the library ``nvidia-smi`` reads), so it answers on machines
without ``nvidia-smi`` on the PATH and without any CUDA runtime installed; its error code says why there is no GPU
(no driver, a driver installed but not loaded, a driver updated without a reboot).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mirage_desktop.doctor.check import FAIL, OK, SKIP, WARN, Check
from mirage_desktop.doctor.lines import (
    BLACKWELL_CAPABILITY,
    CUDA12,
    CUDA13,
    LINES,
    driver_advice,
    driver_range,
    line_for_driver,
)

logger = logging.getLogger(__name__)

NAME = "gpu"
#: NVML error codes (nvml.h) that mean "no NVIDIA driver on this machine", as opposed to a driver in trouble
LIBRARY_NOT_FOUND = 12
DRIVER_NOT_LOADED = 9
LIB_RM_VERSION_MISMATCH = 18
NO_PERMISSION = 4
#: what a GPU gives, in the README's words (How it works)
GPU_GAIN = "an NVIDIA GPU animates it in about 20 to 50 ms a frame, where a small CPU takes seconds"
REMOTE_ADVICE = ("or run the engine on a GPU machine and use it from here: mirage --remote https://HOST:8765 "
                 "(README: On a cloud GPU)")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_bytes: int
    capability: tuple[int, int] | None  # CUDA compute capability, None when NVML cannot tell

    def describe(self) -> str:
        cc = f", compute {self.capability[0]}.{self.capability[1]}" if self.capability else ""
        return f"GPU {self.index}: {self.name}, {self.memory_bytes / 2**30:.1f} GiB{cc}"


@dataclass(frozen=True)
class NvidiaProbe:
    """What NVML said: the driver version, the CUDA version it supports and the GPUs; or why there is none."""

    driver: str | None = None  # "580.65.06"
    cuda: str | None = None  # the newest CUDA the driver runs, "13.0"
    gpus: tuple[Gpu, ...] = ()
    error: str = ""  # NVML's message when there is no driver to ask
    error_code: int | None = None

    @property
    def present(self) -> bool:
        """An NVIDIA GPU (or its driver) is on this machine, whether or not it works: everything but "no driver"."""
        return self.driver is not None or self.error_code not in (None, LIBRARY_NOT_FOUND)

    @property
    def usable(self) -> bool:
        return self.driver is not None and bool(self.gpus)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def probe(nvml: Any = None) -> NvidiaProbe:
    """Ask NVML (``pynvml`` unless ``nvml`` is given: tests pass its answers); never raises."""
    if nvml is None:
        try:
            import pynvml
        except ImportError as exc:
            return NvidiaProbe(error=f"nvidia-ml-py is not installed ({exc})", error_code=LIBRARY_NOT_FOUND)
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return NvidiaProbe(error=str(exc), error_code=getattr(exc, "value", None))
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda_int = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda: str | None = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
        except nvml.NVMLError:
            cuda = None
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability: tuple[int, int] | None = (int(major), int(minor))
            except nvml.NVMLError:
                capability = None
            gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetName(handle)),
                            int(nvml.nvmlDeviceGetMemoryInfo(handle).total), capability))
        return NvidiaProbe(driver=driver, cuda=cuda, gpus=tuple(gpus))
    except nvml.NVMLError as exc:
        return NvidiaProbe(error=str(exc), error_code=getattr(exc, "value", None))
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            logger.debug("nvmlShutdown: %s", exc)


def _no_driver_fix(code: int | None) -> str:
    if code == DRIVER_NOT_LOADED:
        return ("the NVIDIA driver is installed but not loaded: reboot (with Secure Boot on, enrol the driver's key "
                "when asked, or sign the module); `nvidia-smi` must list the GPU")
    if code == LIB_RM_VERSION_MISMATCH:
        return "the NVIDIA driver was updated but the old one still runs: reboot"
    if code == NO_PERMISSION:
        return "NVML refuses this user: check the permissions of /dev/nvidia* (or run `nvidia-smi` to see the error)"
    return "run `nvidia-smi` to see what the driver says, and reinstall the driver if it fails too"


def gpu_check(probe: NvidiaProbe, *, remote: bool = False) -> Check:
    """The driver, its GPUs and the line it runs; without a GPU, what one would give."""
    if remote and not probe.usable:
        return Check(NAME, SKIP, f"No NVIDIA GPU in use here ({probe.error or 'no GPU listed'}): the animation runs "
                                 "on the remote engine")
    if probe.driver is None:
        if probe.error_code in (None, LIBRARY_NOT_FOUND):
            return Check(NAME, WARN, f"No NVIDIA driver found (NVML: {probe.error or 'not found'}): the avatar runs on "
                                     f"the CPU; {GPU_GAIN}",
                         f"on a computer with an NVIDIA GPU: install its driver, R{CUDA13.min_driver} or newer (the "
                         f"{CUDA13.name} line; R{CUDA12.min_driver} at least for {CUDA12.name}), then run "
                         f"`mirage doctor` again; {REMOTE_ADVICE}")
        return Check(NAME, WARN, f"The NVIDIA driver does not answer (NVML: {probe.error}): the avatar runs on the "
                                 "CPU", _no_driver_fix(probe.error_code))
    cuda = f" (CUDA {probe.cuda})" if probe.cuda else ""
    head = f"NVIDIA driver {probe.driver}{cuda}"
    if not probe.gpus:
        return Check(NAME, WARN, f"{head}, but it lists no GPU: the avatar runs on the CPU",
                     "in a container, start it with the GPU (docker run --gpus all ...); else check `nvidia-smi`")
    gpus = "; ".join(g.describe() for g in probe.gpus)
    line = line_for_driver(probe.driver)
    if line is None:
        return Check(NAME, WARN, f"{head}, {gpus}: this driver is older than R{CUDA12.min_driver}, which neither "
                                 "GPU line runs on, so the avatar runs on the CPU", driver_advice())
    blackwell = [g for g in probe.gpus if g.capability and g.capability[0] >= BLACKWELL_CAPABILITY]
    if blackwell and line is not CUDA13:
        return Check(NAME, WARN, f"{head}, {gpus}: {blackwell[0].name} needs the {CUDA13.name} line (the "
                                 f"{CUDA12.name} builds have no kernels for it), which needs driver "
                                 f"R{CUDA13.min_driver}; this driver runs {line.name} only",
                     f"update the NVIDIA driver to R{CUDA13.min_driver} or newer, then {CUDA13.switch_fix()}")
    older = [other.name for other in LINES if other.major < line.major]
    also = f" (and {', '.join(older)})" if older else ""
    return Check(NAME, OK, f"{head}, {gpus}; this driver ({driver_range(line)}) runs the {line.name} line{also}")


def gpu_fail_check(exc: BaseException) -> Check:
    """The verdict when probing itself broke (a bug or a broken nvidia-ml-py): said, never a crash."""
    return Check(NAME, FAIL, f"Probing the GPU failed: {type(exc).__name__}: {exc}",
                 "reinstall nvidia-ml-py (pip install --force-reinstall nvidia-ml-py) and report the error if it stays")
