"""The one small interface every inference backend of the LivePortrait networks implements.

A backend turns one loaded network (F, M, W, G or a retargeting MLP) into a :class:`ModuleRunner`: a callable that
takes and returns torch tensors on the chain's device, float32 at the boundary whatever runs inside. The runner
(:mod:`mirage_desktop.liveportrait.runner`) and the conformance command call a :class:`BackendNetworks`, which has
the same attribute names as the PyTorch networks, so the chain's maths does not know which backend runs a module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

#: short module names (the kit's and the benchmarks') -> attribute of LivePortraitNetworks / BackendNetworks
MODULES: dict[str, str] = {
    "F": "appearance",
    "M": "motion",
    "W": "warping",
    "G": "generator",
    "stitching": "stitching",
    "lip": "lip",
    "eye": "eye",
}
BACKENDS = ("torch", "onnxruntime", "auto")
PRECISIONS = ("fp32", "bf16", "fp16")
#: the heavy per-frame modules, the only ones reduced precision applies to; F (once per portrait), M (its pose
#: heads are precision-sensitive) and the MLPs (microseconds) stay float32, which keeps the keypoints exact
REDUCED_MODULES = ("W", "G")

#: progress of a long one-time step (export, TensorRT build, measuring): (message, fraction done in [0, 1])
Progress = Callable[[str, float], None]


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package or provider, failed export); the message names the fix."""


class ModuleRunner(Protocol):
    """One network on one backend at one precision: tensors in, float32 tensors (or their NamedTuple) out."""

    @property
    def backend(self) -> str: ...

    @property
    def precision(self) -> str: ...  # read-only to callers: a guard reports its active runner's

    def __call__(self, *inputs: torch.Tensor) -> Any: ...


def no_progress(message: str, fraction: float) -> None:
    """The default progress callback: says nothing."""


@dataclass
class BackendNetworks:
    """One runner per network, under the attribute names of :class:`LivePortraitNetworks`; what the chain calls.

    ``reasons`` collects what the user should know about the choice (a fallback, a precision switch), newest last.
    """

    appearance: ModuleRunner
    motion: ModuleRunner
    warping: ModuleRunner
    generator: ModuleRunner
    stitching: ModuleRunner
    lip: ModuleRunner
    eye: ModuleRunner
    reasons: list[str] = field(default_factory=list)
    #: the PyTorch networks these runners were built from (the guards' fp32 twins run them), for rebuilding
    torch_networks: Any = None

    def runner(self, module: str) -> ModuleRunner:
        """The runner of a short module name (``"W"``) or an attribute name (``"warping"``)."""
        return getattr(self, MODULES.get(module, module))

    def choices(self) -> dict[str, str]:
        """Short module name -> ``"backend precision"`` actually running it now (a guard may have switched it)."""
        out = {}
        for short in MODULES:
            r = self.runner(short)
            active = getattr(r, "active", r)
            out[short] = f"{active.backend} {active.precision}"
        return out

    def all_reasons(self) -> list[str]:
        """The choice's reasons plus every guard's switch, for the stage's reason line."""
        guard = [r.reason for short in MODULES if (r := getattr(self.runner(short), "reason", None))]
        return [*self.reasons, *guard]


def to_float32(out: Any) -> Any:
    """Cast a tensor, or every tensor of a NamedTuple, to float32 (a no-op for float32)."""
    if isinstance(out, torch.Tensor):
        return out.float()
    return type(out)(*(t.float() for t in out))


def first_tensor(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]
