"""Stand-ins for the boundaries ``mirage doctor`` cannot cross on a CPU machine: NVML's answers (the real pynvml
error classes, raised with NVML's own codes), a camera that delivers frames, and a fake ONNX Runtime module whose
provider list and load failures are chosen by the test (it writes to the native log the way ORT does)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pynvml

from mirage_desktop.engine.sources import Source, SourceError


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 4090"
    memory: int = 24 * 2**30
    capability: tuple[int, int] = (8, 9)


@dataclass
class FakeNvml:
    """pynvml's surface as the doctor uses it. ``init_error`` is an NVML error code raised by nvmlInit."""

    driver: str = "580.65.06"
    cuda: int = 13000
    gpus: list[FakeGpu] = field(default_factory=lambda: [FakeGpu()])
    init_error: int | None = None
    shut_down: bool = False

    NVMLError = pynvml.NVMLError

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes:
        return handle.name.encode()  # older nvidia-ml-py releases answer bytes

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(total=handle.memory, free=handle.memory, used=0)

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu) -> tuple[int, int]:
        return handle.capability


def no_driver() -> FakeNvml:
    """A machine without the NVIDIA driver: NVML's library is not there (what pynvml says on this CPU machine)."""
    return FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


class FrameCamera(Source):
    """A camera that opens and delivers ``size`` frames at ``fps``, or fails to open with ``error``."""

    def __init__(self, index: int, size: tuple[int, int] = (1280, 720), fps: float = 30.0,
                 error: str | None = None) -> None:
        self.index, self.size, self.fps, self.error = index, size, fps, error
        self.name = f"camera:{index}"
        self.opened = self.closed = False

    def open(self) -> None:
        if self.error:
            raise SourceError(self.error)
        self.opened = True

    def read(self) -> np.ndarray | None:
        width, height = self.size
        return np.zeros((height, width, 3), np.uint8)

    def close(self) -> None:
        self.closed = True


class FakeSession:
    def __init__(self, providers: list[str]) -> None:
        self.providers = providers

    def get_providers(self) -> list[str]:
        return self.providers

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [feeds["x"] * 2]


class FakeOrt:
    """``onnxruntime`` with ``available`` providers of which ``broken`` ones fail to load: a broken provider is
    dropped from the session with ORT's native log line on descriptor 2 and its Python wrapper's note on stdout.
    :meth:`install` puts it (and its build info) where ``import onnxruntime`` finds it."""

    def __init__(self, available: list[str], broken: dict[str, str], cuda: str | None = "13.0") -> None:
        self.available, self.broken, self.cuda = available, broken, cuda
        self.__version__ = "1.31.1"

    def install(self, monkeypatch: Any) -> None:
        info = ModuleType("onnxruntime.capi.build_and_package_info")
        info.package_name, info.cuda_version = "onnxruntime-gpu", self.cuda  # type: ignore[attr-defined]
        capi = ModuleType("onnxruntime.capi")
        capi.build_and_package_info = info  # type: ignore[attr-defined]
        for name, module in (("onnxruntime", self), ("onnxruntime.capi", capi), (info.__name__, info)):
            monkeypatch.setitem(sys.modules, name, module)

    class SessionOptions:
        log_severity_level = 2

    def get_available_providers(self) -> list[str]:
        return list(self.available)

    def InferenceSession(self, model: bytes, options: Any, providers: list[Any]) -> FakeSession:  # noqa: N802
        names = [p if isinstance(p, str) else p[0] for p in providers]
        kept = []
        for name in names:
            if name in self.broken:
                os.write(2, f"\x1b[1;31m[E:onnxruntime:Default, provider_bridge_ort.cc:2458] Failed to load library "
                            f"libonnxruntime_providers_{name}.so with error: {self.broken[name]}\x1b[m\n".encode())
                print(f"EP Error {self.broken[name]} when using {names}")
                sys.stdout.flush()
            else:
                kept.append(name)
        return FakeSession(kept)
