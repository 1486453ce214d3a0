"""Inference backends of the LivePortrait networks (PyTorch, ONNX Runtime) behind one interface; see base.py."""

from mirage_desktop.liveportrait.backends.base import (
    BACKENDS,
    MODULES,
    PRECISIONS,
    BackendNetworks,
    BackendUnavailable,
    ModuleRunner,
    Progress,
    no_progress,
)
from mirage_desktop.liveportrait.backends.select import build_networks, resolve_precision

__all__ = [
    "BACKENDS",
    "MODULES",
    "PRECISIONS",
    "BackendNetworks",
    "BackendUnavailable",
    "ModuleRunner",
    "Progress",
    "build_networks",
    "no_progress",
    "resolve_precision",
]
