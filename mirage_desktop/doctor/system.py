"""The machine and the install: OS, Python, Mirage and the versions of the packages that matter, the CPU's features
(AVX-512 and bf16 decide the CPU precision) and threads. A bug report starts from this line."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import psutil

from mirage_desktop import __version__
from mirage_desktop.doctor.check import FAIL, OK, Check
from mirage_desktop.os_support import cpu_flags, cpu_model

NAME = "system"
#: distributions shown by version; the ones the app cannot start without are REQUIRED
KEY_PACKAGES = ("torch", "onnxruntime-gpu", "onnxruntime", "numpy", "opencv-python-headless", "PySide6-Essentials",
                "pyvirtualcam", "aiortc", "nvidia-ml-py")
REQUIRED = ("torch", "numpy", "opencv-python-headless", "PySide6-Essentials")


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """name -> installed version, None when not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_text(flags: frozenset[str] | None) -> str:
    """``AVX2, AVX-512, bf16`` as far as the flags tell (either spelling of each flag counts)."""
    if flags is None:
        return "features unknown"
    has = {
        "AVX2": {"avx2"},
        "AVX-512": {"avx512f", "avx512_f"},
        "bf16": {"avx512_bf16", "avx512bf16", "amx_bf16", "bf16"},
    }
    return ", ".join(f"{label}" if flags & names else f"no {label}" for label, names in has.items())


def system_check(versions: dict[str, str | None] | None = None, flags: frozenset[str] | None = None) -> Check:
    """OS, Python, Mirage, packages, CPU; fails only when a package the app cannot start without is missing."""
    versions = package_versions() if versions is None else versions
    flags = cpu_flags() if flags is None else flags
    bundle = " (bundled app)" if getattr(sys, "frozen", False) else ""
    packages = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    cores = psutil.cpu_count(logical=False)
    threads = f"{os.cpu_count() or '?'} threads" + (f" on {cores} cores" if cores else "")
    detail = (f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}, "
              f"Mirage {__version__}{bundle}; {packages}; CPU {cpu_model()}, {threads}, {cpu_text(flags)}")
    missing = [name for name in REQUIRED if not versions.get(name)]
    if missing:
        return Check(NAME, FAIL, f"{detail}; missing: {', '.join(missing)}",
                     f"pip install {' '.join(missing)} (in a checkout, scripts/setup.sh installs the pinned set)")
    return Check(NAME, OK, detail)
