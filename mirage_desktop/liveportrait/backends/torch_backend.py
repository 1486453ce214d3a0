"""The PyTorch backend: the networks as loaded, float32, or under autocast with their weights converted once.

Autocast re-casts a float32 weight on every call unless it requires grad (its cast cache keeps only those), so a
reduced-precision module here is a copy whose convolution and linear weights are already in the low dtype: the
per-frame path casts activations only. Normalisation parameters stay float32 (autocast runs those ops in float32
on CUDA), which keeps the error down.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mirage_desktop.liveportrait.backends.base import BackendUnavailable, to_float32
from mirage_desktop.os_support import cpu_flags

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: CPU flags (as torch's cpuinfo or the kernel spell them) of native bf16 instructions: AVX512-BF16 or AMX
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_tile", "amx_bf16"})


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX): elsewhere bf16 is emulated and slower. False
    when the flags cannot be read. Not mkldnn's bf16 check, which is also true on AVX512 CPUs that only emulate."""
    return bool((cpu_flags() or frozenset()) & NATIVE_BF16_FLAGS)


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot run, naming the fix."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise BackendUnavailable("fp16 needs a GPU (cuda or mps); on a CPU use --precision bf16 or fp32")


def low_precision_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy whose conv/linear weights (and derived weight buffers, e.g. G's spectral-normalised ones) are ``dtype``."""
    low = copy.deepcopy(module)
    for sub in low.modules():
        if isinstance(sub, _WEIGHTED) or (hasattr(sub, "weight_orig") and isinstance(getattr(sub, "weight", None), torch.Tensor)):
            for name in ("weight", "bias"):
                t = getattr(sub, name, None)
                if isinstance(t, torch.Tensor):
                    converted = t.detach().to(dtype)
                    if isinstance(t, nn.Parameter):
                        setattr(sub, name, nn.Parameter(converted, requires_grad=False))
                    else:
                        setattr(sub, name, converted)
    return low


class TorchModule:
    """One network in PyTorch at ``precision``; float32 outputs."""

    backend = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str = "fp32") -> None:
        check_precision(device, precision)
        self.precision = precision
        self.device = device
        self.dtype = DTYPES[precision]
        self.module = module if precision == "fp32" else low_precision_copy(module, self.dtype)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.precision == "fp32":
            return self.module(*inputs)
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            return to_float32(self.module(*inputs))


def check_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``, or a load error that says why it cannot run here and what to use instead.

    Without this an explicit ``--device cuda`` on a machine without CUDA dies later with "Torch not compiled with
    CUDA enabled" while /health still says cuda.
    """
    from mirage_desktop.liveportrait.loader import LivePortraitLoadError

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__} " + ("has no CUDA build" if torch.version.cuda is None else
                                                     f"(CUDA {torch.version.cuda}) sees no usable GPU or driver")
            raise LivePortraitLoadError(f"--device {device}: {build}; use --device cpu or install the CUDA torch build")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LivePortraitLoadError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LivePortraitLoadError(f"--device {device}: this torch has no usable MPS (Apple GPU); use --device cpu")
    return dev
