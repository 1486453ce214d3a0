"""Every check in report order, the slow independent ones (hashing models, opening cameras, the remote) on threads
beside the runtime checks so the whole report takes a few seconds; and :func:`gpu_warnings`, the part the session
says at start: a GPU that is there but unused, with the fix."""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mirage_desktop.config import Settings
from mirage_desktop.doctor import cameras, files, gpu, models, onnx_runtime, remote, system, torch_build
from mirage_desktop.doctor import virtual_camera
from mirage_desktop.doctor.check import NAMES, REMOTE, SKIP, WARN, Check, Report

logger = logging.getLogger(__name__)

BUG_FIX = "this is a bug in the check itself: please report it with this report (Help > System check > Copy report)"


def guarded(name: str, make: Callable[[], Check]) -> Check:
    """``make()``, or a warning naming the exception: one broken check never hides the others."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - reported, with the traceback in the log
        logger.exception("The %s check failed", name)
        return Check(name, WARN, f"The check could not run: {type(exc).__name__}: {exc}", BUG_FIX)


def export_cache_root() -> Path:
    """Where LivePortrait's exported networks live (the backends' own rule: ``MIRAGE_CACHE_DIR`` or the user cache)."""
    from mirage_desktop.liveportrait.backends.export import cache_root

    return cache_root()


def load_settings_for(settings_file: Path | None = None, models_dir: Path | None = None,
                      env: Mapping[str, str] | None = None) -> tuple[Settings, Check, Path]:
    """The settings ``mirage`` would run with (``--settings``/``--models-dir`` as on its command line), the verdict
    on them, and the file they come from."""
    env = os.environ if env is None else env
    path = files.settings_path(settings_file, env)
    settings, verdict = files.load(path, env)
    if models_dir is not None:
        settings.override("models_dir", Path(models_dir).expanduser())
    return settings, verdict, path


def diagnose(settings: Settings, settings_verdict: Check, settings_file: Path, *, nvml: Any = None,
             probe_cameras: bool = True, cameras_in_use: Sequence[int] = ()) -> Report:
    """Every check on ``settings``; ``nvml`` replaces pynvml (tests), ``probe_cameras=False`` skips opening them,
    ``cameras_in_use`` are this process's own (not reopened)."""
    remote_url = settings.remote_url
    with concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="doctor") as pool:
        cache_root = pool.submit(export_cache_root)
        side = {
            "virtual_camera": pool.submit(guarded, "virtual_camera", virtual_camera.virtual_camera_check),
            "cameras": pool.submit(guarded, "cameras", lambda: cameras.cameras_check(
                configured=settings.source, in_use=cameras_in_use) if probe_cameras
                else Check("cameras", SKIP, "Not probed (--no-cameras)")),
            "models": pool.submit(guarded, "models", lambda: models.models_check(
                settings.models_dir, cache_root.result(), scrfd_model=settings.scrfd_model)),
            "storage": pool.submit(guarded, "storage", lambda: files.storage_check(
                settings, cache_root.result(), settings_file)),
        }
        if remote_url:
            side[REMOTE] = pool.submit(guarded, REMOTE, lambda: remote.remote_check(remote_url, settings.remote_token))
        nvidia = gpu.probe(nvml)
        here = {
            "system": guarded("system", system.system_check),
            "gpu": guarded("gpu", lambda: gpu.gpu_check(nvidia, remote=bool(remote_url))),
            "torch": guarded("torch", lambda: torch_build.torch_check(torch_build.torch_facts(), nvidia)),
            "onnxruntime": guarded("onnxruntime", lambda: onnx_runtime.onnxruntime_check(
                onnx_runtime.ort_facts(nvidia.present, _cuda(settings.device)), nvidia)),
            "settings": settings_verdict,
        }
        found = {**here, **{name: future.result() for name, future in side.items()}}
    order = [*NAMES, REMOTE] if remote_url else list(NAMES)
    return Report.of([found[name] for name in order])


def report_for(settings: Settings, settings_file: Path | None = None, *,
               cameras_in_use: Sequence[int] = ()) -> Report:
    """The report on a running Mirage's own ``settings`` (the window's, with this run's overrides); the settings
    file is judged as ``mirage`` would read it next time."""
    path = files.settings_path(settings_file, os.environ)
    _, verdict = files.load(path, os.environ)
    return diagnose(settings, verdict, path, cameras_in_use=cameras_in_use)


def _cuda(device: str) -> str:
    return device if device.startswith("cuda") else "cuda"


def gpu_warnings(settings: Settings, *, nvml: Any = None) -> list[Check]:
    """The gpu, torch and onnxruntime problems of a machine whose NVIDIA GPU is there but unused (torch without
    CUDA, a provider that does not load, a CPU onnxruntime shadowing the GPU one), each with its fix; empty on a
    machine without an NVIDIA driver, or when the settings choose the CPU. Quick: no camera, no model, no
    TensorRT build. What the window's banner and ``/health`` show at start."""
    if settings.device == "cpu":
        return []
    nvidia = gpu.probe(nvml)
    if not nvidia.present:
        return []
    checks = [
        guarded("gpu", lambda: gpu.gpu_check(nvidia)),
        guarded("torch", lambda: torch_build.torch_check(torch_build.torch_facts(), nvidia)),
        guarded("onnxruntime", lambda: onnx_runtime.onnxruntime_check(
            onnx_runtime.ort_facts(True, _cuda(settings.device), tensorrt=False), nvidia)),
    ]
    return [c for c in checks if c.problem]
