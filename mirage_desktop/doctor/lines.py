"""The two supported GPU lines and the NVIDIA driver each needs: the one place their versions and commands live.

CUDA 13 (driver R580 or newer) is what requirements.lock pins: torch from the cu130 index and onnxruntime-gpu >= 1.27
(CUDA 13 only on PyPI). CUDA 12 (R525 to R579) is torch from the cu126 index and onnxruntime-gpu 1.26, the last
release on PyPI that links CUDA 12. NVIDIA's rule: a CUDA 12.x runtime needs driver >= R525, 13.x >= R580. cu126 has
no kernels for Blackwell (RTX 50, compute capability 10 and 12), which therefore needs the CUDA 13 line.

README (Install), scripts/setup.sh and packaging/Dockerfile spell the same recipes; tests/test_doctor_lines.py holds
them to these values and resolves both onnxruntime-gpu pins against PyPI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the torch release both lines install (also the CPU install's pin)
TORCH_VERSION = "2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/"
#: the first GPU generation (compute capability major) that cu126 has no kernels for
BLACKWELL_CAPABILITY = 10


@dataclass(frozen=True)
class CudaLine:
    """One install recipe: the CUDA major of torch and onnxruntime-gpu, the drivers that run it."""

    major: int
    torch_tag: str  # the PyTorch index's name for the build, also torch's local version label
    onnxruntime_gpu: str  # the exact onnxruntime-gpu release of this line
    min_driver: int  # the NVIDIA driver branch (R-number) the CUDA runtime of this major needs

    @property
    def name(self) -> str:
        return f"CUDA {self.major}"

    @property
    def torch_index(self) -> str:
        return f"{TORCH_INDEX}{self.torch_tag}"

    def commands(self) -> list[str]:
        """The pip commands that put this line into the current environment (from any line, or none)."""
        return [
            f'pip install "torch=={TORCH_VERSION}+{self.torch_tag}" --index-url {self.torch_index}',
            "pip uninstall -y onnxruntime onnxruntime-gpu",
            f'pip install "onnxruntime-gpu=={self.onnxruntime_gpu}"',
        ]

    def switch_fix(self) -> str:
        """The fix line that switches to this line: the commands, and the checkout's one-liner."""
        return (f"install the {self.name} line: {' && '.join(self.commands())} "
                f"(in a checkout: scripts/setup.sh --cuda {self.major})")


CUDA13 = CudaLine(major=13, torch_tag="cu130", onnxruntime_gpu="1.31.1", min_driver=580)
CUDA12 = CudaLine(major=12, torch_tag="cu126", onnxruntime_gpu="1.26.0", min_driver=525)
#: newest first: a driver runs the newest line it is new enough for (and every older one)
LINES = (CUDA13, CUDA12)
OLDEST_DRIVER = min(line.min_driver for line in LINES)


def driver_branch(version: str) -> int | None:
    """``"580.65.06"`` -> 580 (the R-number NVIDIA's tables use); None when the text is no driver version."""
    match = re.match(r"\s*(\d+)\.", version or "")
    return int(match.group(1)) if match else None


def line_for_driver(version: str) -> CudaLine | None:
    """The newest line driver ``version`` runs; None below R525 (or for an unreadable version)."""
    branch = driver_branch(version)
    if branch is None:
        return None
    return next((line for line in LINES if branch >= line.min_driver), None)


def line_for_cuda(cuda: str | None) -> CudaLine | None:
    """The line of a runtime built for CUDA ``cuda`` (``"12.6"``, ``"13.0"``); None for no or another major."""
    match = re.match(r"\s*(\d+)", cuda or "")
    major = int(match.group(1)) if match else None
    return next((line for line in LINES if line.major == major), None)


def driver_range(line: CudaLine) -> str:
    """``"R580 or newer"`` / ``"R525 to R579"``: the drivers for which ``line`` is the newest."""
    newer = [other.min_driver for other in LINES if other.min_driver > line.min_driver]
    return f"R{line.min_driver} to R{min(newer) - 1}" if newer else f"R{line.min_driver} or newer"


def driver_advice() -> str:
    """What a machine whose driver runs no line needs: the one spelling of that advice."""
    return (f"update the NVIDIA driver to R{CUDA13.min_driver} or newer (the {CUDA13.name} line; "
            f"R{CUDA12.min_driver} at least for the {CUDA12.name} line), then run `mirage doctor` again")
