"""The cameras: each one found, opened the way Mirage opens it (1280x720 at 30 fps asked, MJPG where offered) for one
frame, with the size and rate it really gives. A camera another app holds shows up here as one that does not open."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mirage_desktop.doctor.check import OK, WARN, Check
from mirage_desktop.engine.sources import Source, SourceError, SourceLost, WebcamSource
from mirage_desktop.outputs.virtual_camera_devices import SYSFS_VIDEO4LINUX

NAME = "cameras"
#: indices tried where the OS has no device list (Windows, macOS): until the first that does not open
MAX_INDEX = 4
OpenCamera = Callable[[int], Source]
NO_CAMERA_FIX = ("connect a webcam and close other apps that use it; without one, Mirage runs on a video file "
                 "(mirage --source FILE) or its demo, and a browser's webcam can drive a server over WebRTC")


def candidates(dev: Path = Path("/dev"), sysfs: Path = SYSFS_VIDEO4LINUX) -> list[int] | None:
    """The camera indices to try: on Linux the ``/dev/videoN`` that are not v4l2loopback devices (Mirage's own
    output among them); None elsewhere (try 0, 1, ... until one does not open)."""
    if not sys.platform.startswith("linux"):
        return None
    loopback = {p.name for p in sysfs.glob("video*")} if sysfs.is_dir() else set()
    found = []
    for node in dev.glob("video*"):
        digits = node.name[len("video"):]
        if digits.isdigit() and node.name not in loopback:
            found.append(int(digits))
    return sorted(found)


def probe_camera(index: int, open_camera: OpenCamera) -> tuple[str, bool]:
    """(``camera 0: 1280x720 at 30 fps`` or why not, whether it delivered a frame)."""
    source = open_camera(index)
    try:
        source.open()
        frame = source.read()
        if frame is None:
            return f"camera {index}: opens but delivers no frame", False
        height, width = frame.shape[:2]
        return f"camera {index}: {width}x{height} at {source.fps:g} fps", True
    except (SourceError, SourceLost) as exc:
        return f"camera {index}: {exc}", False
    finally:
        source.close()


def in_turn(probe: Callable[[int], tuple[str, bool]], limit: int = MAX_INDEX) -> list[tuple[int, str, bool]]:
    """Cameras 0, 1, ... up to the first that does not deliver (where the OS lists no devices)."""
    results: list[tuple[int, str, bool]] = []
    for index in range(limit):
        text, ok = probe(index)
        if not ok:
            break
        results.append((index, text, ok))
    return results


def cameras_check(indices: Sequence[int] | None = None, open_camera: OpenCamera = WebcamSource,
                  configured: str = "", in_use: Sequence[int] = ()) -> Check:
    """Each camera opened for one frame; ``configured`` is the settings' source (a camera index is looked for);
    ``in_use`` are the cameras this Mirage has open (the window's source), counted as working, not reopened."""

    def probe(index: int) -> tuple[str, bool]:
        if index in in_use:
            return f"camera {index}: in use by this Mirage", True
        return probe_camera(index, open_camera)

    indices = candidates() if indices is None else indices
    if indices is None:
        results = in_turn(probe)
    else:
        results = [(index, *probe(index)) for index in indices]
    working = [index for index, _, ok in results if ok]
    detail = "; ".join(text for _, text, _ in results)
    if not results:
        return Check(NAME, WARN, "No camera found", NO_CAMERA_FIX)
    if configured.isdigit() and int(configured) not in working:
        choice, flag = (f"camera {working[0]}", str(working[0])) if working else ("the demo", "demo")
        return Check(NAME, WARN, f"{detail}; the settings choose camera {configured}, which does not deliver",
                     f"pick {choice} in the window's Source list (or mirage --source {flag})")
    if not working:
        return Check(NAME, WARN, detail, NO_CAMERA_FIX)
    return Check(NAME, OK, detail)
