"""A stand-in for the kernel virtual-camera device (the one boundary this machine cannot cross).

``FakeDeviceBackend`` implements pyvirtualcam's backend interface, so the real ``pyvirtualcam.Camera`` (format
checks, flattening, fps counter) runs in front of it exactly as it does in front of v4l2loopback; the backend only
records what would have been written to the device.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np

BACKEND_NAME = "fake_device"

_FORMATS = {"24BG": "bgr", "raw ": "rgb"}


def _decode_fourcc(code: int) -> str:
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))


class FakeDeviceBackend:
    """Records frames and write times; ``instances`` lists every device opened, newest last."""

    instances: ClassVar[list[FakeDeviceBackend]] = []
    keep: ClassVar[int] = 8  # frames kept as copies (the device would have copied them too)
    block: ClassVar[threading.Event | None] = None  # when set to an Event, send() waits for it (a stalled device)

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        fourcc_text = _decode_fourcc(fourcc)
        if fourcc_text not in _FORMATS:
            raise RuntimeError(f"Unsupported image format {fourcc_text!r}.")
        self.width, self.height, self.fps = width, height, fps
        self.fmt = _FORMATS[fourcc_text]
        self._device = device or "/dev/video42"
        self.times: list[float] = []
        self.frames: list[np.ndarray] = []
        self.last_view: np.ndarray | None = None  # the array exactly as received (no copy)
        self.closed = False
        self.close_calls = 0
        self.writes_after_close = 0
        FakeDeviceBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        block = FakeDeviceBackend.block
        if block is not None:
            block.wait(10.0)
        if self.closed:
            self.writes_after_close += 1
        assert frame.ndim == 1 and frame.dtype == np.uint8, "pyvirtualcam hands backends flat uint8 arrays"
        self.last_view = frame
        self.times.append(time.perf_counter())
        self.frames.append(frame.reshape(self.height, self.width, 3).copy())
        if len(self.frames) > self.keep:
            del self.frames[0]

    def close(self) -> None:
        self.close_calls += 1
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int | None:
        return None

    @property
    def count(self) -> int:
        return len(self.times)


def wait_until(condition: Any, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.perf_counter() + timeout
    while True:
        if condition():
            return True
        if time.perf_counter() >= deadline:
            return bool(condition())
        time.sleep(interval)
