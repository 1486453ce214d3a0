"""The ONNX Runtime backend: our exported graphs with providers chosen by device.

cpu -> CPU EP; cuda[:i] -> TensorRT EP (fp16 when asked, engines cached in the user cache dir; its rank-4-only
GridSample nodes fall back to the CUDA EP) then CUDA EP then CPU; directml -> DirectML EP (onnxruntime-directml,
Windows AMD/Intel GPUs). MPS has no ORT provider that runs a 5-D GridSample (CoreML does not), so it is refused.
A session that did not get the provider it asked for is refused too, with the reason: a silent CPU fallback on a
GPU machine would look like a working GPU path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mirage_desktop.liveportrait.backends.base import BackendUnavailable
from mirage_desktop.liveportrait.backends.export import SPECS, cache_root
from mirage_desktop.vision import onnx_session as osess

logger = logging.getLogger(__name__)

_NP_TO_TORCH = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}


def providers_for(device: str, precision: str, cache_dir: Path | str | None = None) -> list[Any]:
    """The provider list (with options) to ask for on ``device`` (cpu, cuda[:i], directml[:i]); raises
    BackendUnavailable naming the fix."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime (or -gpu)") from exc
    available = set(ort.get_available_providers())
    dev = device.lower()
    kind = dev.partition(":")[0]
    if precision == "bf16":
        raise BackendUnavailable("ONNX Runtime has no bf16 path here; it runs fp32 (or fp16 through TensorRT)")
    if kind == "cpu":
        if precision != "fp32":
            raise BackendUnavailable(f"ONNX Runtime on the CPU runs fp32 only, not {precision}")
        return [osess.CPU]
    if kind == "cuda":
        chain: list[Any] = []
        if osess.TENSORRT in available:
            trt_dir = cache_root(cache_dir) / "tensorrt"
            trt_dir.mkdir(parents=True, exist_ok=True)
            chain.append((osess.TENSORRT, osess.tensorrt_provider_options(dev, str(trt_dir), precision == "fp16")))
        elif precision == "fp16":
            raise BackendUnavailable("fp16 in ONNX Runtime needs the TensorRT provider (TensorRT 10 libraries)")
        if osess.CUDA not in available:
            raise BackendUnavailable(osess.provider_fallback([osess.CUDA], [osess.CPU]) or "no CUDA provider")
        return [*chain, (osess.CUDA, osess.cuda_provider_options(dev, exhaustive=True)), osess.CPU]
    if kind == "directml":
        if osess.DIRECTML not in available:
            raise BackendUnavailable(osess.provider_fallback([osess.DIRECTML], [osess.CPU]) or "no DirectML")
        return [(osess.DIRECTML, {"device_id": str(osess.device_index(dev))}), osess.CPU]
    raise BackendUnavailable(f"ONNX Runtime has no provider for {dev} that runs W's 5-D grid_sample; use torch")


class OrtModule:
    """One exported network in an ORT session; torch tensors in and out on the chain's device."""

    backend = "onnxruntime"

    def __init__(
        self,
        name: str,
        model: Path,
        device: torch.device,
        precision: str = "fp32",
        threads: int = 0,
        wrap: Callable[..., Any] | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.name = name
        self.precision = precision
        self.device = device
        self.wrap = wrap
        # DirectML has no torch device: the chain's tensors stay on the CPU and ORT copies them to the GPU
        ort_device = ort_device_for(device)
        requested = providers_for(ort_device, precision, cache_dir)
        try:
            self.session = osess.open_session(str(model), threads, requested)
        except Exception as exc:  # noqa: BLE001 - a broken file, a missing library, out of memory while building
            raise BackendUnavailable(f"ONNX Runtime could not load {name} ({exc})") from exc
        self.providers = self.session.get_providers()
        reason = osess.provider_fallback(requested, self.providers)
        self.reason = reason  # e.g. TensorRT missing, CUDA kept: shown, not fatal
        if reason is not None and self.providers[0] == osess.CPU and ort_device != "cpu":
            raise BackendUnavailable(reason)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._on_cpu = device.type == "cpu"

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self._on_cpu:
            feeds = {n: x.detach().contiguous().numpy() for n, x in zip(self.input_names, inputs)}
            outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(self.output_names, feeds)]
        else:
            outs = self._run_bound(inputs)
        if self.wrap is not None:
            return self.wrap(*outs)
        return outs[0]

    def _run_bound(self, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """GPU: bind the torch tensors' memory in place (no host trip), outputs allocated by torch on the device."""
        binding = self.session.io_binding()
        dev_type, dev_id = "cuda", self.device.index or 0
        keep = [x.detach().contiguous().float() for x in inputs]
        for name, x in zip(self.input_names, keep):
            binding.bind_input(name, dev_type, dev_id, np.float32, tuple(x.shape), x.data_ptr())
        for name in self.output_names:
            binding.bind_output(name, dev_type, dev_id)
        self.session.run_with_iobinding(binding)
        return [torch.from_dlpack(o.to_dlpack()) if hasattr(o, "to_dlpack") else torch.from_numpy(o.numpy()).to(self.device)
                for o in binding.get_outputs()]


def ort_device_for(device: torch.device) -> str:
    """The ORT device of a chain device: ``cuda:1`` stays itself; a CPU chain asks ``$MIRAGE_ORT_DEVICE`` (e.g.
    ``directml``) or the CPU."""
    import os

    if device.type == "cpu":
        return os.environ.get("MIRAGE_ORT_DEVICE", "cpu")
    return f"{device.type}:{device.index or 0}"


def load(name: str, model: Path, device: torch.device, precision: str, threads: int,
         wrap: Callable[..., Any] | None, cache_dir: Path | str | None) -> OrtModule:
    """An :class:`OrtModule` for ``name`` (its spec says the names), raising BackendUnavailable on any failure."""
    if name not in SPECS:
        raise BackendUnavailable(f"no ONNX export spec for {name}")
    return OrtModule(name, model, device, precision, threads, wrap, cache_dir)
