"""Which virtual camera to open on this OS, and what to install or run when there is none.

Backends come from pyvirtualcam: v4l2loopback on Linux (the device whose card label is "Mirage" is preferred),
OBS Studio's virtual camera on Windows and macOS, Unity Capture on Windows (a device registered as "Mirage" is
tried first). Every failure ends in :class:`VirtualCameraUnavailable` whose message names the fix for this OS.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

try:
    import pyvirtualcam
except Exception as exc:  # a broken native build must not take the app down: opening reports it with the fix
    pyvirtualcam = None
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None

#: The name the virtual camera carries in other apps, where the backend lets us choose it.
DEVICE_LABEL = "Mirage"
#: The one line that creates that camera on Linux.
MODPROBE_LINE = f"sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label={DEVICE_LABEL}"
#: Where v4l2loopback publishes each device's card label (``videoN/name``). Real webcams sit elsewhere in sysfs.
SYSFS_VIDEO4LINUX = Path("/sys/devices/virtual/video4linux")

#: Called like ``pyvirtualcam.Camera(width, height, fps, fmt=..., device=..., backend=...)``.
CameraFactory = Callable[..., Any]


class VirtualCameraUnavailable(RuntimeError):
    """No virtual camera could be opened; the message says what to install or run on this OS."""


def available_backend_hint(system: str | None = None) -> str:
    """What to install or run so that a virtual camera exists on ``system`` (default: this OS)."""
    system = system or platform.system()
    if system == "Linux":
        return (
            "Install v4l2loopback (Debian/Ubuntu: sudo apt install v4l2loopback-dkms; Fedora: v4l2loopback from "
            "RPM Fusion; if /dev/videoN then exists but cannot be opened, add yourself to the video group with "
            f"sudo usermod -a -G video $USER and log in again), then create the camera with: {MODPROBE_LINE}"
        )
    if system == "Windows":
        return (
            "Install OBS Studio 26 or newer (https://obsproject.com), which brings the 'OBS Virtual Camera', and "
            "make sure OBS itself is not running its virtual camera; or install Unity Capture "
            "(https://github.com/schellingb/UnityCapture) and register a device named 'Mirage'."
        )
    if system == "Darwin":
        return (
            "Install OBS Studio (https://obsproject.com), open it once, click 'Start Virtual Camera' (allow the "
            "system extension if macOS asks), then 'Stop Virtual Camera' and quit OBS. Apps then list Mirage as "
            "'OBS Virtual Camera'."
        )
    return f"Virtual cameras are supported on Linux (v4l2loopback), Windows and macOS (OBS Studio), not on {system}."


def find_mirage_device(label: str = DEVICE_LABEL, root: Path | None = None) -> str | None:
    """The ``/dev/videoN`` of the v4l2loopback device whose card label is ``label``, or None (Linux only)."""
    root = SYSFS_VIDEO4LINUX if root is None else root
    if not root.is_dir():
        return None

    def number(entry: Path) -> int:
        digits = entry.name[len("video") :]
        return int(digits) if digits.isdigit() else 1 << 30

    for entry in sorted(root.glob("video*"), key=number):
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if name == label:
            return f"/dev/{entry.name}"
    return None


def pixel_format(fmt: str) -> Any:
    """pyvirtualcam's pixel format for ``"bgr"`` / ``"rgb"`` (the name itself when pyvirtualcam is missing)."""
    if pyvirtualcam is None:
        return fmt
    return pyvirtualcam.PixelFormat.BGR if fmt == "bgr" else pyvirtualcam.PixelFormat.RGB


def camera_factory(factory: CameraFactory | None, backend: str | None) -> CameraFactory:
    """``factory`` when given, else ``pyvirtualcam.Camera`` once it is known to have ``backend`` (or any)."""
    if factory is not None:
        return factory
    if pyvirtualcam is None:
        raise VirtualCameraUnavailable(
            f"pyvirtualcam cannot be loaded ({_IMPORT_ERROR}); reinstall it with "
            f"'pip install --force-reinstall pyvirtualcam'. {available_backend_hint()}"
        )
    known = pyvirtualcam.camera.BACKENDS
    if not known:
        raise VirtualCameraUnavailable(f"pyvirtualcam has no backend on {platform.system()}. {available_backend_hint()}")
    if backend is not None and backend not in known:
        raise VirtualCameraUnavailable(
            f"Unknown virtual camera backend {backend!r}; this system offers: "
            f"{', '.join(known)}. Leave the backend unset to try them all."
        )
    return pyvirtualcam.Camera


def attempts(device: str | None, backend: str | None, label: str) -> list[tuple[str | None, str | None]]:
    """(device, backend) pairs to try in turn: what the user asked for, else the ``label`` device first."""
    if device is not None or backend is not None:
        return [(device, backend)]
    system = platform.system()
    if system == "Linux":
        found = find_mirage_device(label)
        if found is not None:
            return [(found, None)]
        logger.info("No v4l2loopback device labelled %r; trying any loopback device", label)
    elif system == "Windows":
        return [(label, "unitycapture"), (None, None)]
    return [(None, None)]


def open_camera(
    width: int,
    height: int,
    fps: float,
    fmt: str,
    *,
    device: str | None,
    backend: str | None,
    label: str,
    factory: CameraFactory | None = None,
) -> Any:
    """Open the first camera that works; else raise :class:`VirtualCameraUnavailable` naming every failure."""
    make = camera_factory(factory, backend)
    pixel = pixel_format(fmt)
    errors: list[str] = []
    for dev, back in attempts(device, backend, label):
        try:
            return make(width, height, fps, fmt=pixel, device=dev, backend=back)
        except Exception as exc:  # every backend fails in its own way; all are reported together
            where = ", ".join(x for x in (back and f"backend {back}", dev and f"device {dev}") if x)
            detail = " ".join(str(exc).split()) or type(exc).__name__
            errors.append(f"{where}: {detail}" if where else detail)
    raise VirtualCameraUnavailable(f"No virtual camera could be opened ({'; '.join(errors)}). {available_backend_hint()}")
