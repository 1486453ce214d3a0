"""Cost of the virtual camera output's own work per frame: conversion to the camera's size/format and the hand-over
through pyvirtualcam.Camera, with a null device (the kernel's copy and, on Linux, libyuv's BGR -> I420 inside
pyvirtualcam are not included: measure those with benchmarks/vcam_check.py on a machine with v4l2loopback).

    python benchmarks/vcam_output.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pyvirtualcam

from mirage_desktop.engine.frame import Frame
from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput


class NullDevice:
    """A pyvirtualcam backend that accepts frames and does nothing (the device side is not measured here)."""

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        self._device = device or "null"

    def send(self, frame: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> None:
        return None


CASES = [
    ((1280, 720), (1280, 720), "bgr"),
    ((1280, 720), (1280, 720), "rgb"),
    ((1920, 1080), (1280, 720), "bgr"),
    ((640, 480), (1280, 720), "bgr"),
    ((512, 512), (1280, 720), "bgr"),
]


def run(src: tuple[int, int], cam: tuple[int, int], fmt: str, seconds: float, fps: float) -> dict[str, Any]:
    out = VirtualCameraOutput(cam[0], cam[1], fps, fmt=fmt, backend="null")
    out.start()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (src[1], src[0], 3), dtype=np.uint8) for _ in range(4)]
    for img in images:
        img.flags.writeable = False
    t_end = time.perf_counter() + seconds
    i = 0
    interval = 1.0 / fps
    while time.perf_counter() < t_end:  # an engine at the camera's rate
        out.send(Frame(image=images[i % 4], index=i, t_capture=time.perf_counter()))
        i += 1
        time.sleep(interval)
    stats = out.stats()
    out.close()
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args()
    pyvirtualcam.register_backend("null", NullDevice)
    print(f"{'frame':>10} {'camera':>10} fmt  new  repeated  convert+send p50/p95 ms  capture->device p50 ms")
    for src, cam, fmt in CASES:
        s = run(src, cam, fmt, args.seconds, args.fps)
        print(
            f"{src[0]}x{src[1]:<5} {cam[0]}x{cam[1]:<5} {fmt}  {s['frames_new']:4d}  {s['frames_repeated']:8d}"
            f"  {s['p50_ms']:10.3f} / {s['p95_ms']:.3f}  {s['capture_to_device']['p50_ms']:14.3f}"
        )


if __name__ == "__main__":
    main()
