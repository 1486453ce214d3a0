"""The virtual camera check against a pyvirtualcam backend registry and a sysfs/dev tree laid out as the kernel lays
out v4l2loopback's, and OBS's files on Windows and macOS; the cameras check against cameras that deliver or refuse.
Every problem's fix asserted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pyvirtualcam
from doctor_helpers import FrameCamera
from vcam_helpers import FakeDeviceBackend

from mirage_desktop.doctor.cameras import NO_CAMERA_FIX, cameras_check, candidates, in_turn, probe_camera
from mirage_desktop.doctor.check import OK, SKIP, WARN
from mirage_desktop.doctor.virtual_camera import (
    OBS_WINDOWS_MODULE,
    RELOAD_LINE,
    VIDEO_GROUP_LINE,
    virtual_camera_check,
)
from mirage_desktop.outputs.virtual_camera_devices import MODPROBE_LINE, available_backend_hint

LINUX = {"v4l2loopback": object}


def kernel(tmp_path: Path, devices: dict[str, str], caps: str | None = "Y") -> dict[str, Path]:
    """sysfs and /dev as v4l2loopback leaves them: videoN/name per device, the module's parameters, device nodes."""
    sysfs, module, dev = tmp_path / "video4linux", tmp_path / "module", tmp_path / "dev"
    dev.mkdir(parents=True)
    for node, label in devices.items():
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(label + "\n")
        (dev / node).write_bytes(b"")
    if caps is not None:
        (module / "parameters").mkdir(parents=True)
        (module / "parameters" / "exclusive_caps").write_text(caps + "\n")
    return {"sysfs": sysfs, "module": module, "dev": dev}


def test_the_mirage_device_with_exclusive_caps_is_what_would_open(tmp_path: Path) -> None:
    paths = kernel(tmp_path, {"video2": "Dummy video device", "video10": "Mirage"}, caps="N,Y")
    check = virtual_camera_check("Linux", LINUX, **paths)
    assert check.status == OK
    assert check.detail == f"Mirage would open {paths['dev'] / 'video10'} ('Mirage', v4l2loopback, exclusive_caps=1)"


def test_no_module_no_device_and_no_exclusive_caps(tmp_path: Path) -> None:
    missing = virtual_camera_check("Linux", LINUX, sysfs=tmp_path / "none", module=tmp_path / "none")
    assert missing.status == WARN and "not loaded" in missing.detail
    assert missing.fix == available_backend_hint("Linux") and MODPROBE_LINE in missing.fix
    empty = kernel(tmp_path / "a", {}, caps="Y")
    check = virtual_camera_check("Linux", LINUX, **empty)
    assert check.status == WARN and "has no device" in check.detail and check.fix == RELOAD_LINE
    plain = kernel(tmp_path / "b", {"video0": "Mirage"}, caps="N")
    check = virtual_camera_check("Linux", LINUX, **plain)
    assert check.status == WARN and "exclusive_caps=0" in check.detail and "Chrome, Meet, Zoom" in check.detail
    assert check.fix == f"sudo modprobe -r v4l2loopback && {MODPROBE_LINE}"


def test_an_unlabelled_device_is_used_and_said(tmp_path: Path) -> None:
    paths = kernel(tmp_path, {"video4": "OBS Virtual Camera"})
    check = virtual_camera_check("Linux", LINUX, **paths)
    assert check.status == OK and "apps list it as 'OBS Virtual Camera'" in check.detail


def test_a_device_this_user_may_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = kernel(tmp_path, {"video0": "Mirage"})
    (paths["dev"] / "video0").chmod(0o444)
    if os.access(paths["dev"] / "video0", os.W_OK):  # root writes anything: the kernel's answer for a user instead
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real(path, mode))
    check = virtual_camera_check("Linux", LINUX, **paths)
    assert check.status == WARN and check.fix == VIDEO_GROUP_LINE


def test_the_backend_registry_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyvirtualcam's own registry, read for real: a Windows build registers obs and unitycapture."""
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"obs": FakeDeviceBackend, "unitycapture": FakeDeviceBackend})
    (tmp_path / OBS_WINDOWS_MODULE).parent.mkdir(parents=True)
    (tmp_path / OBS_WINDOWS_MODULE).write_bytes(b"MZ")
    check = virtual_camera_check("Windows", program_files=tmp_path)
    assert check.status == OK and "OBS Virtual Camera" in check.detail
    without = virtual_camera_check("Windows", program_files=tmp_path / "empty")
    assert without.status == WARN and "would try unitycapture" in without.detail
    assert without.fix == available_backend_hint("Windows")
    no_v4l2 = virtual_camera_check("Linux", sysfs=tmp_path, module=tmp_path)
    assert no_v4l2.status == WARN and "no v4l2loopback backend" in no_v4l2.detail
    assert no_v4l2.fix == "pip install --force-reinstall pyvirtualcam"


def test_macos_obs_and_a_broken_pyvirtualcam(tmp_path: Path) -> None:
    (tmp_path / "OBS.app").mkdir()
    assert virtual_camera_check("Darwin", {"obs": object}, obs_app=tmp_path / "OBS.app").status == OK
    missing = virtual_camera_check("Darwin", {"obs": object}, obs_app=tmp_path / "none.app")
    assert missing.status == WARN and missing.fix == available_backend_hint("Darwin")
    broken = virtual_camera_check("Linux", "ImportError: libv4l2.so")
    assert broken.status == WARN and broken.fix.startswith("pip install --force-reinstall pyvirtualcam.")
    assert virtual_camera_check("FreeBSD", {}).status == SKIP


def test_this_machine_says_what_to_install_or_what_would_open() -> None:
    check = virtual_camera_check()
    assert check.status in (OK, WARN, SKIP) and (check.fix or check.status != WARN)


# ------------------------------------------------------------------------------------------------------- cameras
def test_each_camera_opened_for_one_frame() -> None:
    opened: list[FrameCamera] = []

    def open_camera(index: int) -> FrameCamera:
        camera = FrameCamera(index, (640, 480), 15.0) if index == 0 else FrameCamera(index, error=f"Camera {index} "
                                                                                      "cannot be opened. Check it.")
        opened.append(camera)
        return camera

    check = cameras_check([0, 2], open_camera)
    assert check.status == OK
    assert check.detail == "camera 0: 640x480 at 15 fps; camera 2: Camera 2 cannot be opened. Check it."
    assert all(c.closed for c in opened)


def test_no_camera_and_a_configured_camera_that_is_gone() -> None:
    none = cameras_check([], FrameCamera)
    assert none.status == WARN and none.detail == "No camera found" and none.fix == NO_CAMERA_FIX
    gone = cameras_check([0], FrameCamera, configured="3")
    assert gone.status == WARN and "the settings choose camera 3" in gone.detail
    assert gone.fix == "pick camera 0 in the window's Source list (or mirage --source 0)"
    refused = cameras_check([0], lambda i: FrameCamera(i, error="busy"))
    assert refused.status == WARN and refused.fix == NO_CAMERA_FIX
    ours = cameras_check([0], lambda i: FrameCamera(i, error="busy"), configured="0", in_use=[0])
    assert ours.status == OK and ours.detail == "camera 0: in use by this Mirage"


def test_indices_are_tried_in_turn_where_the_os_has_no_list() -> None:
    found = in_turn(lambda i: probe_camera(i, lambda j: FrameCamera(j) if j < 2 else FrameCamera(j, error="none")))
    assert [(index, ok) for index, _, ok in found] == [(0, True), (1, True)]
    assert found[1][1] == "camera 1: 1280x720 at 30 fps"


def test_linux_candidates_leave_out_loopback_devices(tmp_path: Path) -> None:
    if candidates() is None:
        pytest.skip("Linux only")
    paths = kernel(tmp_path, {"video10": "Mirage"})
    for node in ("video0", "video1"):
        (paths["dev"] / node).write_bytes(b"")
    assert candidates(paths["dev"], paths["sysfs"]) == [0, 1]
