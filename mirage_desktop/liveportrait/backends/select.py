"""Which backend runs which module: fixed (``torch``, ``onnxruntime``) or measured once per machine (``auto``).

``auto`` times every module on every backend that loads here (one warm-up, a few runs, on the export spec's example
inputs), keeps the candidates whose output matches PyTorch float32 (float32: max error <= FP32_ATOL relative to the
output's scale; reduced precision: mean error <= LOOSE_MEAN_ABS), and runs each module on its fastest. The result is
cached in the user cache dir with the machine, the device, the precision, the thread count and the versions, so the
next start only reads it. A backend that fails (missing provider, failed export) is skipped with its reason.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mirage_desktop.liveportrait.backends import export as onnx_export
from mirage_desktop.liveportrait.backends.base import (
    BACKENDS,
    MODULES,
    PRECISIONS,
    REDUCED_MODULES,
    BackendNetworks,
    BackendUnavailable,
    ModuleRunner,
    Progress,
    first_tensor,
    no_progress,
)
from mirage_desktop.liveportrait.backends.guard import GuardedModule
from mirage_desktop.liveportrait.backends.torch_backend import TorchModule, cpu_has_native_bf16
from mirage_desktop.liveportrait.kit_compare import LOOSE_MEAN_ABS
from mirage_desktop.liveportrait.loader import LivePortraitNetworks
from mirage_desktop.liveportrait.motion_extractor import RawMotion
from mirage_desktop.liveportrait.warping import WarpOutput
from mirage_desktop.os_support import cpu_model

logger = logging.getLogger(__name__)

#: float32 conformance of a candidate: max |out - torch fp32| <= FP32_ATOL * max(1, max |torch fp32|)
FP32_ATOL = 1e-4
_WRAP: dict[str, Callable[..., Any]] = {"M": RawMotion, "W": WarpOutput}
CHOICES_VERSION = 1


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: fp16 on a GPU, bf16 on a CPU with native bf16 (AVX512-BF16/AMX), else fp32."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
        return precision
    if device.type in ("cuda", "mps"):
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def _torch_module(nets: LivePortraitNetworks, short: str) -> torch.nn.Module:
    return getattr(nets, MODULES[short])


def _ort(nets: LivePortraitNetworks, short: str, device: torch.device, precision: str, digest: str | None,
         cache_dir: Path | str | None, progress: Progress) -> ModuleRunner:
    """The ORT runner of one module, exporting it first if needed; a broken cached file is exported again once."""
    from mirage_desktop.liveportrait.backends import onnx_backend

    module = _torch_module(nets, short)
    ort_precision = "fp16" if precision == "fp16" else "fp32"
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    # a provider that is not there is known before exporting: no minutes spent on a graph that cannot run
    onnx_backend.providers_for(onnx_backend.ort_device_for(device), ort_precision, cache_dir)
    model = onnx_export.ensure_onnx(short, module, cache_dir, progress, digest)
    try:
        return onnx_backend.load(short, model, device, ort_precision, threads, _WRAP.get(short), cache_dir)
    except BackendUnavailable as exc:
        if "could not load" not in str(exc):
            raise
        logger.warning("cached ONNX file of %s is unusable (%s); exporting it again", short, exc)
        model = onnx_export.ensure_onnx(short, module, cache_dir, progress, digest, rebuild=True)
        return onnx_backend.load(short, model, device, ort_precision, threads, _WRAP.get(short), cache_dir)


def _time(runner: ModuleRunner, inputs: tuple[torch.Tensor, ...], runs: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    runner(*inputs)
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        runner(*inputs)
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def conformant(out: torch.Tensor, ref: torch.Tensor, precision: str) -> tuple[bool, float]:
    """(passes, error): float32 by max error relative to the output's scale, reduced precision by mean error."""
    out, ref = out.float(), ref.float()
    if not bool(torch.isfinite(out).all()):
        return False, float("inf")
    if precision == "fp32":
        err = float((out - ref).abs().max())
        return err <= FP32_ATOL * max(1.0, float(ref.abs().max())), err
    err = float((out - ref).abs().mean())
    return err <= LOOSE_MEAN_ABS, err


def machine_key(device: torch.device, precision: str, backends: tuple[str, ...], digest: str) -> str:
    """What a measurement depends on: the machine, the device, precision, threads, versions, weights."""
    try:
        import onnxruntime as ort

        ort_v = ort.__version__
    except ImportError:
        ort_v = "none"
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{cpu_model()} x{os.cpu_count()}"
    return "|".join([hw, str(device), precision, f"threads {torch.get_num_threads()}", f"torch {torch.__version__}",
                     f"ort {ort_v}", ",".join(backends), digest[:16]])


def _choices_file(cache_dir: Path | str | None) -> Path:
    return onnx_export.cache_root(cache_dir) / "liveportrait-backends.json"


def _read_choices(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if data.get("version") == CHOICES_VERSION else {"version": CHOICES_VERSION}
    except (OSError, ValueError):
        return {"version": CHOICES_VERSION}


def build_networks(
    nets: LivePortraitNetworks,
    device: torch.device,
    backend: str = "torch",
    precision: str = "fp32",
    *,
    cache_dir: Path | str | None = None,
    progress: Progress = no_progress,
    guard: bool = True,
    runs: int = 3,
) -> BackendNetworks:
    """One runner per module for ``backend`` at ``precision`` (reduced precision for W and G only)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    precision = resolve_precision(precision, device)
    reasons: list[str] = []
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        reasons.append("this CPU has no native bf16 (AVX512-BF16/AMX): bf16 is emulated and may be slower than fp32")
    digests: dict[str, str] = {}

    def digest(short: str) -> str:
        if short not in digests:
            digests[short] = onnx_export.weights_digest(_torch_module(nets, short))
        return digests[short]

    fp32_torch = {short: TorchModule(_torch_module(nets, short), device, "fp32") for short in MODULES}
    chosen: dict[str, ModuleRunner] = {}
    if backend == "auto":
        chosen = _auto(nets, device, precision, cache_dir, progress, runs, fp32_torch, digest, reasons)
    unavailable: dict[str, list[str]] = {}  # reason -> modules it sent back to PyTorch (one line per reason)
    for short in MODULES:
        if short in chosen:
            continue
        p = precision if short in REDUCED_MODULES else "fp32"
        if backend == "onnxruntime":
            try:
                runner = _ort(nets, short, device, p, digest(short), cache_dir, progress)
                chosen[short] = runner
                reason = getattr(runner, "reason", None)  # what an ORT runner got instead of what it asked for
                if reason:
                    reasons.append(f"{short}: {reason}")
                continue
            except BackendUnavailable as exc:
                unavailable.setdefault(str(exc), []).append(short)
        chosen[short] = fp32_torch[short] if p == "fp32" else TorchModule(_torch_module(nets, short), device, p)
    for why, shorts in unavailable.items():
        reasons.append(f"{', '.join(shorts)}: {why}; running {'it' if len(shorts) == 1 else 'them'} in PyTorch")

    runners: dict[str, ModuleRunner] = {}
    for short, runner in chosen.items():
        if guard and runner.precision != "fp32":
            g = GuardedModule(short, runner, fp32_torch[short])
            g.probe(*onnx_export.SPECS[short].example(device))
            runner = g
        runners[MODULES[short]] = runner
    return BackendNetworks(**runners, reasons=reasons, torch_networks=nets)


def _auto(nets: LivePortraitNetworks, device: torch.device, precision: str, cache_dir: Path | str | None,
          progress: Progress, runs: int, fp32_torch: dict[str, TorchModule], digest: Callable[[str], str],
          reasons: list[str]) -> dict[str, ModuleRunner]:
    """Measure (or read the measurement of) every module on every backend; return the fastest conformant."""
    key = machine_key(device, precision, ("torch", "onnxruntime"), digest("G") + digest("W"))
    path = _choices_file(cache_dir)
    data = _read_choices(path)
    record: dict[str, Any] = data.get(key, {})
    chosen: dict[str, ModuleRunner] = {}
    measured = False
    for i, short in enumerate(MODULES):
        p = precision if short in REDUCED_MODULES else "fp32"

        def torch_runner(s: str = short, q: str = p) -> ModuleRunner:
            return fp32_torch[s] if q == "fp32" else TorchModule(_torch_module(nets, s), device, q)

        def ort_runner(s: str = short, q: str = p) -> ModuleRunner:
            return _ort(nets, s, device, q if q == "fp16" else "fp32", digest(s), cache_dir, progress)

        builders: dict[str, Callable[[], ModuleRunner]] = {"torch": torch_runner, "onnxruntime": ort_runner}
        if short in record and record[short].get("backend") in builders:
            try:
                chosen[short] = builders[record[short]["backend"]]()
                continue
            except BackendUnavailable as exc:
                reasons.append(f"{short}: {exc}")
        measured = True
        progress(f"Measuring the {short} network on each backend (one time)", i / len(MODULES))
        inputs = onnx_export.SPECS[short].example(device)
        with torch.inference_mode():
            ref = first_tensor(fp32_torch[short](*inputs)).float()
            results: dict[str, dict[str, Any]] = {}
            best: tuple[float, str, ModuleRunner] | None = None
            for name, build in builders.items():
                try:
                    runner = build()
                except BackendUnavailable as exc:
                    results[name] = {"error": str(exc)}
                    continue
                ok, err = conformant(first_tensor(runner(*inputs)), ref, runner.precision)
                ms = _time(runner, inputs, runs, device)
                results[name] = {"ms": round(ms, 4), "error": err, "conformant": ok, "precision": runner.precision}
                if ok and (best is None or ms < best[0]):
                    best = (ms, name, runner)
        if best is None:
            best = (0.0, "torch", fp32_torch[short])
            reasons.append(f"{short}: no backend met the tolerance at {p}; running PyTorch fp32")
        chosen[short] = best[2]
        record[short] = {"backend": best[1], "measured": results}
        logger.info("auto backend for %s: %s (%s)", short, best[1], results)
    if measured:
        data[key] = record
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(data, indent=1))
            os.replace(path.with_suffix(".tmp"), path)
        except OSError as exc:
            logger.warning("could not save the backend measurements to %s: %s", path, exc)
        progress("Measured the networks on each backend", 1.0)
    return chosen


def measurements(cache_dir: Path | str | None = None) -> dict[str, Any]:
    """Every cached ``auto`` measurement (for the benchmarks' report)."""
    return _read_choices(_choices_file(cache_dir))
