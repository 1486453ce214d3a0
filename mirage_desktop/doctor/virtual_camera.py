"""Which virtual camera Mirage would open, found without opening it (a running Mirage may be feeding it): the
pyvirtualcam backends this build has, on Linux the v4l2loopback module, its devices, their labels and
``exclusive_caps``, on Windows and macOS OBS Studio's virtual camera. Each fix is the virtual-camera guide's line."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mirage_desktop.doctor.check import OK, SKIP, WARN, Check
from mirage_desktop.outputs.virtual_camera_devices import (
    DEVICE_LABEL,
    MODPROBE_LINE,
    SYSFS_VIDEO4LINUX,
    available_backend_hint,
)

NAME = "virtual_camera"
#: where the kernel shows the v4l2loopback module and its parameters
V4L2LOOPBACK_MODULE = Path("/sys/module/v4l2loopback")
RELOAD_LINE = f"sudo modprobe -r v4l2loopback && {MODPROBE_LINE}"
VIDEO_GROUP_LINE = "sudo usermod -a -G video $USER (then log in again)"
#: OBS Studio's virtual camera: the DirectShow module its installer registers (Windows), the app (macOS)
OBS_WINDOWS_MODULE = Path("obs-studio") / "data" / "obs-plugins" / "win-dshow" / "obs-virtualcam-module64.dll"
OBS_MACOS_APP = Path("/Applications/OBS.app")


def pyvirtualcam_backends() -> Mapping[str, Any] | str:
    """pyvirtualcam's backend registry, or why pyvirtualcam does not load."""
    try:
        import pyvirtualcam
    except Exception as exc:  # noqa: BLE001 - a broken native build is the finding
        return f"{type(exc).__name__}: {exc}"
    return dict(pyvirtualcam.camera.BACKENDS)


def loopback_devices(sysfs: Path) -> list[tuple[str, str]]:
    """(``videoN``, card label) of every v4l2loopback device, in number order."""
    if not sysfs.is_dir():
        return []

    def number(entry: Path) -> int:
        digits = entry.name[len("video"):]
        return int(digits) if digits.isdigit() else 1 << 30

    found = []
    for entry in sorted(sysfs.glob("video*"), key=number):
        try:
            found.append((entry.name, (entry / "name").read_text(encoding="utf-8", errors="replace").strip()))
        except OSError:
            continue
    return found


def exclusive_caps(module: Path, position: int) -> bool | None:
    """The module's ``exclusive_caps`` for its ``position``-th device (one value per device, comma-separated);
    None when the kernel does not say."""
    try:
        values = (module / "parameters" / "exclusive_caps").read_text(encoding="utf-8").strip().split(",")
    except OSError:
        return None
    value = values[position] if position < len(values) else values[0]
    return value.strip().upper() in ("Y", "1")


def _linux(backends: Mapping[str, Any], sysfs: Path, module: Path, dev: Path, label: str) -> Check:
    hint = available_backend_hint("Linux")
    if "v4l2loopback" not in backends:
        return Check(NAME, WARN, f"pyvirtualcam has no v4l2loopback backend here (it has: "
                                 f"{', '.join(backends) or 'none'})", "pip install --force-reinstall pyvirtualcam")
    if not module.is_dir():
        return Check(NAME, WARN, "The v4l2loopback kernel module is not loaded: there is no virtual camera for "
                                 "Zoom, Meet or OBS to pick", hint)
    devices = loopback_devices(sysfs)
    if not devices:
        return Check(NAME, WARN, "v4l2loopback is loaded but has no device", RELOAD_LINE)
    labelled = [i for i, (_, name) in enumerate(devices) if name == label]
    position = labelled[0] if labelled else 0
    node, name = devices[position]
    path = dev / node
    caps = exclusive_caps(module, position)
    where = f"{path} ('{name}', v4l2loopback, exclusive_caps={'?' if caps is None else int(caps)})"
    if caps is False:
        return Check(NAME, WARN, f"Mirage would open {where}: without exclusive_caps=1, Chrome, Meet, Zoom and Teams "
                                 "do not list it", RELOAD_LINE)
    if path.exists() and not os.access(path, os.W_OK):
        return Check(NAME, WARN, f"Mirage would open {where}, but this user may not write to it", VIDEO_GROUP_LINE)
    note = "" if labelled else f"; no device is labelled '{label}', so apps list it as '{name}'"
    return Check(NAME, OK, f"Mirage would open {where}{note}")


def _obs(system: str, backends: Mapping[str, Any], program_files: Path | None, obs_app: Path) -> Check:
    hint = available_backend_hint(system)
    if "obs" not in backends:
        return Check(NAME, WARN, f"pyvirtualcam has no OBS backend here (it has: {', '.join(backends) or 'none'})",
                     f"pip install --force-reinstall pyvirtualcam. {hint}")
    if system == "Windows":
        module = (program_files / OBS_WINDOWS_MODULE) if program_files is not None else None
        others = [b for b in backends if b != "obs"]
        if module is not None and module.is_file():
            return Check(NAME, OK, f"Mirage would open the OBS Virtual Camera ({module}); backends: "
                                   f"{', '.join(backends)}")
        return Check(NAME, WARN, f"OBS Studio's virtual camera is not installed (no {OBS_WINDOWS_MODULE} under "
                                 f"{program_files or 'Program Files'}); Mirage would try "
                                 f"{', '.join(others) or 'nothing else'}", hint)
    if obs_app.is_dir():
        return Check(NAME, OK, f"Mirage would open the OBS Virtual Camera ({obs_app}: its virtual camera must have "
                               "been started once in OBS)")
    return Check(NAME, WARN, f"OBS Studio is not installed ({obs_app} is missing): there is no virtual camera", hint)


def virtual_camera_check(
    system: str | None = None,
    backends: Mapping[str, Any] | str | None = None,
    *,
    sysfs: Path = SYSFS_VIDEO4LINUX,
    module: Path = V4L2LOOPBACK_MODULE,
    dev: Path = Path("/dev"),
    label: str = DEVICE_LABEL,
    program_files: Path | None = None,
    obs_app: Path = OBS_MACOS_APP,
) -> Check:
    """What the Virtual camera switch would open on ``system`` (default: this OS), read from the system only."""
    system = system or platform.system()
    backends = pyvirtualcam_backends() if backends is None else backends
    if isinstance(backends, str):
        return Check(NAME, WARN, f"pyvirtualcam does not load ({backends})",
                     f"pip install --force-reinstall pyvirtualcam. {available_backend_hint(system)}")
    if system == "Linux":
        return _linux(backends, sysfs, module, dev, label)
    if system in ("Windows", "Darwin"):
        if program_files is None and os.environ.get("ProgramFiles"):
            program_files = Path(os.environ["ProgramFiles"])
        return _obs(system, backends, program_files, obs_app)
    return Check(NAME, SKIP, available_backend_hint(system))
