"""The virtual camera output, run through the real pyvirtualcam.Camera down to a stand-in for the kernel device."""

from __future__ import annotations

import platform
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
from vcam_helpers import BACKEND_NAME, FakeDeviceBackend, wait_until

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.outputs import virtual_camera_devices as devices
from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput
from mirage_desktop.outputs.virtual_camera_devices import (
    MODPROBE_LINE,
    VirtualCameraUnavailable,
    available_backend_hint,
    find_mirage_device,
)


@pytest.fixture(autouse=True)
def fake_device(monkeypatch: pytest.MonkeyPatch) -> type[FakeDeviceBackend]:
    """Register the device stand-in as a pyvirtualcam backend for this test only."""
    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, BACKEND_NAME, FakeDeviceBackend)
    monkeypatch.setattr(FakeDeviceBackend, "instances", [])
    monkeypatch.setattr(FakeDeviceBackend, "block", None)
    return FakeDeviceBackend


def make_frame(image: np.ndarray, index: int = 0) -> Frame:
    image.flags.writeable = False  # as the engine publishes it
    return Frame(image=image, index=index, t_capture=time.perf_counter())


def quadrants(width: int, height: int) -> np.ndarray:
    """BGR test card: blue, green, red, white quadrants (left-right, top-bottom) so flips and swaps show."""
    img = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    img[:h2, :w2] = (255, 0, 0)
    img[:h2, w2:] = (0, 255, 0)
    img[h2:, :w2] = (0, 0, 255)
    img[h2:, w2:] = (255, 255, 255)
    return img


def started(output: VirtualCameraOutput) -> FakeDeviceBackend:
    output.start()
    assert output.status == "running", output.error
    return FakeDeviceBackend.instances[-1]


def send_and_capture(output: VirtualCameraOutput, image: np.ndarray) -> np.ndarray:
    """Send one frame and return the first device write that carries it (the camera may repeat black first)."""
    device = started(output)
    output.send(make_frame(image))
    assert wait_until(lambda: output.frames_new >= 1 and device.count >= 1)
    output.close()
    # the new frame is the last one written before close when nothing else was sent
    return device.frames[-1]


# ------------------------------------------------------------------------------------------- size and format
def test_full_hd_frame_is_scaled_into_720p_camera() -> None:
    out = VirtualCameraOutput(1280, 720, 30, backend=BACKEND_NAME)
    src = quadrants(1920, 1080)
    got = send_and_capture(out, src)
    assert got.shape == (720, 1280, 3)
    expected = cv2.resize(src, (1280, 720), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(got, expected)


def test_4_3_frame_is_pillarboxed_into_16_9_camera() -> None:
    out = VirtualCameraOutput(1280, 720, 30, backend=BACKEND_NAME)
    src = quadrants(640, 480)
    got = send_and_capture(out, src)
    # 640x480 scaled by 1.5 is 960x720, centred: 160 black columns either side
    assert not got[:, :160].any() and not got[:, 1120:].any()
    inner = got[:, 160:1120]
    expected = cv2.resize(src, (960, 720), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(inner, expected)
    assert tuple(got[100, 300]) == (255, 0, 0)  # top-left quadrant stays blue (BGR) and top-left
    assert tuple(got[600, 1000]) == (255, 255, 255)


def test_tall_frame_is_letterboxed_top_and_bottom() -> None:
    out = VirtualCameraOutput(640, 360, 30, backend=BACKEND_NAME)
    src = quadrants(800, 200)  # 4:1 -> 640x160, 100 black rows above and below
    got = send_and_capture(out, src)
    assert not got[:100].any() and not got[260:].any()
    assert np.array_equal(got[100:260], cv2.resize(src, (640, 160), interpolation=cv2.INTER_LINEAR))


def test_frame_size_change_leaves_no_old_picture_in_the_bars() -> None:
    out = VirtualCameraOutput(320, 180, 30, backend=BACKEND_NAME, fmt="rgb")  # rgb: both go through the canvas
    device = started(out)
    out.send(make_frame(np.full((180, 320, 3), 200, np.uint8)))
    assert wait_until(lambda: out.frames_new >= 1)
    out.send(make_frame(np.full((240, 320, 3), 90, np.uint8), 1))  # 4:3 now: 240 wide, bars of 40
    assert wait_until(lambda: out.frames_new >= 2)
    out.close()
    got = device.frames[-1]
    assert not got[:, :40].any() and not got[:, 280:].any()
    assert (got[:, 40:280] == 90).all()


def test_rgb_camera_gets_channels_swapped_bgr_camera_gets_them_as_is() -> None:
    src = quadrants(320, 240)
    bgr = send_and_capture(VirtualCameraOutput(320, 240, 30, backend=BACKEND_NAME, fmt="bgr"), src)
    assert FakeDeviceBackend.instances[-1].fmt == "bgr"
    assert tuple(bgr[10, 10]) == (255, 0, 0) and tuple(bgr[200, 10]) == (0, 0, 255)
    rgb = send_and_capture(VirtualCameraOutput(320, 240, 30, backend=BACKEND_NAME, fmt="rgb"), src)
    assert FakeDeviceBackend.instances[-1].fmt == "rgb"
    assert tuple(rgb[10, 10]) == (0, 0, 255) and tuple(rgb[200, 10]) == (255, 0, 0)
    assert np.array_equal(rgb, src[:, :, ::-1])


def test_rgb_camera_with_resize_swaps_channels_too() -> None:
    src = quadrants(640, 480)
    got = send_and_capture(VirtualCameraOutput(320, 240, 30, backend=BACKEND_NAME, fmt="rgb"), src)
    expected = cv2.resize(src, (320, 240), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    assert np.array_equal(got, expected)


def test_matching_bgr_frame_reaches_the_device_without_a_copy() -> None:
    out = VirtualCameraOutput(320, 240, 30, backend=BACKEND_NAME)
    device = started(out)
    frame = make_frame(quadrants(320, 240))
    out.send(frame)
    assert wait_until(lambda: out.frames_new >= 1)
    out.close()
    assert device.last_view is not None
    assert np.shares_memory(device.last_view, frame.image)


def test_wrong_shape_frames_are_skipped_and_the_camera_keeps_running() -> None:
    out = VirtualCameraOutput(64, 48, 50, backend=BACKEND_NAME)
    device = started(out)
    out.send(make_frame(np.zeros((48, 64), np.uint8)))  # grayscale: not a BGR frame
    assert wait_until(lambda: device.count >= 5)
    assert out.frames_new == 0 and out.status == "running"
    good = quadrants(64, 48)
    out.send(make_frame(good))
    assert wait_until(lambda: out.frames_new == 1)
    out.close()
    assert np.array_equal(device.frames[-1], good)


# -------------------------------------------------------------------------------------------- pacing, repeats
def test_one_engine_frame_is_repeated_at_the_camera_rate() -> None:
    fps = 50.0
    out = VirtualCameraOutput(64, 48, fps, backend=BACKEND_NAME)
    device = started(out)
    image = quadrants(64, 48)
    out.send(make_frame(image))
    assert wait_until(lambda: device.count >= 30)
    repeated_then = out.frames_repeated
    assert wait_until(lambda: out.frames_repeated > repeated_then + 5)
    out.close()
    stats = out.stats()
    assert stats["frames_new"] == 1
    assert stats["frames_sent"] == stats["frames_new"] + stats["frames_repeated"] == device.count
    for written in device.frames:  # the last few writes are all the one frame, again and again
        assert np.array_equal(written, image)
    span = device.times[-1] - device.times[0]
    assert span > 0
    rate = (device.count - 1) / span
    assert rate <= fps * 1.5, f"camera wrote at {rate:.1f} fps, faster than its {fps} fps clock"
    assert rate >= fps / 5, f"camera wrote at {rate:.1f} fps, far below its {fps} fps clock"


def test_engine_faster_than_camera_drops_stale_frames_not_pace() -> None:
    fps = 10.0
    out = VirtualCameraOutput(64, 48, fps, backend=BACKEND_NAME)
    device = started(out)
    images = [np.full((48, 64, 3), i, np.uint8) for i in range(200)]
    for i, img in enumerate(images):  # far faster than 10 fps
        out.send(make_frame(img, i))
    last = images[-1]
    assert wait_until(lambda: any(np.array_equal(f, last) for f in device.frames))
    out.close()
    assert out.frames_new < 50  # only what each tick found newest was converted and written
    assert out.stats()["frames_skipped"] >= 150


def test_a_fast_engine_does_not_push_the_camera_past_its_rate() -> None:
    fps = 20.0
    out = VirtualCameraOutput(64, 48, fps, backend=BACKEND_NAME)
    device = started(out)
    image = quadrants(64, 48)
    i = 0
    t_end = time.perf_counter() + 1.0
    while time.perf_counter() < t_end:  # an engine at about 200 fps
        out.send(make_frame(image.copy(), i))
        i += 1
        time.sleep(0.005)
    out.close()
    span = device.times[-1] - device.times[0]
    rate = (device.count - 1) / span
    assert i > 3 * fps  # the engine really was faster
    assert rate <= fps * 1.5, f"camera wrote at {rate:.1f} fps, faster than its {fps} fps clock"
    assert out.frames_new >= fps / 4  # and it did keep taking new frames


def test_send_never_waits_for_a_stalled_device(fake_device: type[FakeDeviceBackend]) -> None:
    gate = threading.Event()
    fake_device.block = gate
    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME)
    device = started(out)
    for i in range(500):  # would hang here (and time out) if send waited on the device
        out.send(make_frame(np.zeros((48, 64, 3), np.uint8), i))
    assert device.count == 0  # the device is still stuck in its first write
    gate.set()
    fake_device.block = None
    out.close()
    assert out.stats()["frames_skipped"] >= 498


def test_black_frames_keep_the_camera_alive_before_the_first_frame() -> None:
    out = VirtualCameraOutput(64, 48, 50, backend=BACKEND_NAME)
    device = started(out)
    assert wait_until(lambda: device.count >= 3)
    out.close()
    assert out.frames_new == 0 and out.frames_repeated == device.count
    assert not any(f.any() for f in device.frames)


# ---------------------------------------------------------------------------------------------- lifecycle
def test_set_format_restarts_the_camera_at_the_new_size() -> None:
    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME)
    first = started(out)
    out.send(make_frame(quadrants(64, 48)))
    assert wait_until(lambda: out.frames_new >= 1)
    out.set_format(32, 24, 20)
    assert out.status == "running"
    assert len(FakeDeviceBackend.instances) == 2
    second = FakeDeviceBackend.instances[-1]
    assert first.closed and first.close_calls == 1 and first.writes_after_close == 0
    assert (second.width, second.height, second.fps) == (32, 24, 20.0)
    out.send(make_frame(quadrants(64, 48), 1))
    assert wait_until(lambda: out.frames_new >= 2)
    out.close()
    assert second.closed
    assert second.frames[-1].shape == (24, 32, 3)
    assert np.array_equal(second.frames[-1], cv2.resize(quadrants(64, 48), (32, 24), interpolation=cv2.INTER_AREA))
    assert out.stats()["restarts"] == 1


def test_set_format_with_the_same_values_keeps_the_camera() -> None:
    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME)
    started(out)
    out.set_format(64, 48, 30)
    out.close()
    assert len(FakeDeviceBackend.instances) == 1


def test_set_format_on_a_stopped_output_opens_nothing() -> None:
    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME)
    out.set_format(128, 96, 25)
    assert FakeDeviceBackend.instances == [] and out.status == "stopped"
    device = started(out)
    out.close()
    assert (device.width, device.height) == (128, 96)


def test_close_twice_and_restart_after_close() -> None:
    statuses: list[str] = []
    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME, on_status=lambda s, e: statuses.append(s))
    started(out)
    out.close()
    out.close()
    assert out.status == "stopped"
    started(out)
    out.close()
    assert statuses == ["starting", "running", "stopped", "starting", "running", "stopped"]
    assert all(d.close_calls == 1 for d in FakeDeviceBackend.instances)


def test_a_status_listener_may_stop_the_camera() -> None:
    out: VirtualCameraOutput

    def on_status(status: str, error: BaseException | None) -> None:
        if status == "running":
            out.stop()  # runs on the camera thread itself

    out = VirtualCameraOutput(64, 48, 30, backend=BACKEND_NAME, on_status=on_status)
    out.start()
    assert wait_until(lambda: FakeDeviceBackend.instances[-1].closed)
    assert out.status == "stopped"


def test_invalid_format_names_the_value() -> None:
    with pytest.raises(ValueError, match="1281x720"):
        VirtualCameraOutput(1281, 720, 30)
    with pytest.raises(ValueError, match="'yuv'"):
        VirtualCameraOutput(1280, 720, 30, fmt="yuv")
    with pytest.raises(ValueError, match="500"):
        VirtualCameraOutput(1280, 720, 500)


# ------------------------------------------------------------------------------------- devices and backends
def test_find_mirage_device_by_card_label(tmp_path: Path) -> None:
    for name, label in (("video10", "Mirage"), ("video2", "Dummy video device (0x0000)"), ("video7", "Mirage")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "name").write_text(label + "\n")
    (tmp_path / "video3").mkdir()  # no name file: skipped
    assert find_mirage_device(root=tmp_path) == "/dev/video7"  # numeric order, not text order
    assert find_mirage_device("Dummy video device (0x0000)", root=tmp_path) == "/dev/video2"
    assert find_mirage_device("OBS Cam", root=tmp_path) is None
    assert find_mirage_device(root=tmp_path / "missing") is None


@pytest.mark.skipif(platform.system() != "Linux", reason="v4l2loopback device selection is Linux only")
def test_linux_opens_the_device_labelled_mirage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "video5").mkdir()
    (tmp_path / "video5" / "name").write_text("Mirage\n")
    monkeypatch.setattr(devices, "SYSFS_VIDEO4LINUX", tmp_path)
    calls: list[dict[str, object]] = []

    def factory(width: int, height: int, fps: float, **kw: object) -> pyvirtualcam.Camera:
        calls.append(dict(kw))
        return pyvirtualcam.Camera(width, height, fps, fmt=kw["fmt"], device=kw["device"], backend=BACKEND_NAME)

    out = VirtualCameraOutput(64, 48, 30, camera_factory=factory)
    started(out)
    out.close()
    assert calls == [{"fmt": pyvirtualcam.PixelFormat.BGR, "device": "/dev/video5", "backend": None}]
    assert out.device == "/dev/video5" and out.backend == BACKEND_NAME
    assert out.stats()["device"] == "/dev/video5"


@pytest.mark.skipif(platform.system() != "Linux", reason="checks the Linux message with the real pyvirtualcam")
def test_no_loopback_device_reports_the_modprobe_line(monkeypatch: pytest.MonkeyPatch) -> None:
    if any(Path("/sys/devices/virtual/video4linux").glob("video*")):
        pytest.skip("this machine has a v4l2loopback device; the no-backend message cannot be produced")
    monkeypatch.delitem(pyvirtualcam.camera.BACKENDS, BACKEND_NAME)  # only the real backends remain
    statuses: list[tuple[str, BaseException | None]] = []
    out = VirtualCameraOutput(1280, 720, 30, on_status=lambda s, e: statuses.append((s, e)))
    with pytest.raises(VirtualCameraUnavailable) as info:
        out.start()
    message = str(info.value)
    assert MODPROBE_LINE in message
    assert "v4l2loopback-dkms" in message
    assert "No v4l2 loopback device found" in message  # pyvirtualcam's own diagnosis is kept
    assert out.status == "unavailable" and out.error is info.value
    assert statuses[-1] == ("unavailable", info.value)
    out.send(make_frame(quadrants(64, 48)))  # the engine may keep sending: harmless
    out.close()
    assert out.status == "unavailable"  # the window still shows why
    assert out.stats()["error"] == message


def test_start_without_waiting_reports_through_status() -> None:
    seen = threading.Event()
    errors: list[BaseException | None] = []

    def on_status(status: str, error: BaseException | None) -> None:
        if status == "unavailable":
            errors.append(error)
            seen.set()

    def no_device(*args: object, **kw: object) -> object:
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].")

    out = VirtualCameraOutput(64, 48, 30, camera_factory=no_device, on_status=on_status)
    out.start(wait=False)  # returns at once, as the window's toggle needs
    assert seen.wait(5.0)
    assert isinstance(errors[0], VirtualCameraUnavailable)
    assert "No v4l2 loopback device found" in str(errors[0])
    out.close()


def test_unknown_backend_names_the_choices() -> None:
    out = VirtualCameraOutput(64, 48, 30, backend="nonexistent")
    with pytest.raises(VirtualCameraUnavailable, match="'nonexistent'.*" + BACKEND_NAME):
        out.start()


@pytest.mark.parametrize(
    ("system", "needles"),
    [
        ("Linux", [MODPROBE_LINE, "v4l2loopback-dkms"]),
        ("Windows", ["OBS Studio", "Unity Capture"]),
        ("Darwin", ["OBS Studio", "Start Virtual Camera"]),
        ("FreeBSD", ["FreeBSD"]),
    ],
)
def test_backend_hint_per_os(system: str, needles: list[str]) -> None:
    hint = available_backend_hint(system)
    for needle in needles:
        assert needle in hint


# --------------------------------------------------------------------------------------------- with the engine
def test_engine_with_demo_source_feeds_the_camera() -> None:
    engine = Engine(DemoSource(320, 180, fps=30))
    out = VirtualCameraOutput(160, 120, 30, backend=BACKEND_NAME)
    out.start()
    engine.add_output(out)
    device = FakeDeviceBackend.instances[-1]
    engine.start()
    try:
        assert wait_until(lambda: out.frames_new >= 10, timeout=20.0)
        stats = engine.stats().outputs["virtual_camera"]
    finally:
        engine.stop()  # closes the outputs too
    assert device.closed and out.status == "stopped"
    assert stats["frames_sent"] >= 10 and stats["status"] == "running" and stats["p50_ms"] is not None
    frame = device.frames[-1]
    assert frame.shape == (120, 160, 3)
    # 320x180 -> 160x90 centred: 15 black rows above and below, the demo picture between
    assert not frame[:15].any() and not frame[105:].any()
    assert frame[15:105].mean() > 10
    distinct = {f.tobytes() for f in device.frames}
    assert len(distinct) > 1, "the demo moves: the camera should not show one still picture"
