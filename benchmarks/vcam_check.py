"""Manual check of the virtual camera where v4l2loopback can be loaded: read the "Mirage" device back and compare.

Mirage runs the demo source headless into the virtual camera; this script opens the device with OpenCV like any
video app would, and matches every frame it reads against the demo frames rendered here (the demo is
deterministic). It reports the size read back, the read rate, how well each frame matches (zero-mean normalised
correlation of the luma, which ignores the range/gain differences of the I420 round trip) and whether the matched
frame numbers move forward, i.e. the camera is live, not frozen.

    sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=Mirage
    python benchmarks/vcam_check.py --spawn              # starts mirage --headless --source demo --virtual-camera
    python benchmarks/vcam_check.py                      # or: mirage running already, read for --seconds
    python benchmarks/vcam_check.py --simulate           # no device: checks the comparison on an I420 round trip

Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import cv2
import numpy as np

from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.outputs.virtual_camera_devices import available_backend_hint, find_mirage_device

SMALL = (128, 72)  # comparison size: enough to tell demo frames apart, cheap to correlate against hundreds
MIN_CORRELATION = 0.95


def _signature(bgr: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm luma thumbnail: correlation of two signatures is their dot product."""
    gray = cv2.cvtColor(cv2.resize(bgr, SMALL, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    v = gray.astype(np.float32).ravel()
    v -= v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def reference_signatures(width: int, height: int, fps: float, count: int) -> np.ndarray:
    demo = DemoSource(width, height, fps, paced=False)
    demo.open()
    return np.stack([_signature(demo.render(i)) for i in range(count)])


def open_device(device: str, timeout: float) -> cv2.VideoCapture:
    """With exclusive_caps=1 the device offers capture only once Mirage writes to it: retry until then."""
    deadline = time.perf_counter() + timeout
    while True:
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if cap.isOpened() and cap.read()[0]:
            return cap
        cap.release()
        if time.perf_counter() >= deadline:
            raise SystemExit(f"{device} delivers no frames after {timeout:.0f} s. Is Mirage sending to it?")
        time.sleep(0.5)


def read_frames(cap: cv2.VideoCapture, seconds: float) -> tuple[list[np.ndarray], list[float]]:
    frames: list[np.ndarray] = []
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
        times.append(time.perf_counter())
    return frames, times


def simulated_frames(width: int, height: int, fps: float, seconds: float) -> tuple[list[np.ndarray], list[float]]:
    """What the device returns without one: demo frames through BGR -> I420 -> BGR, as v4l2loopback carries them,
    with every third frame repeated (the camera repeating while the engine is slow)."""
    demo = DemoSource(width, height, fps, paced=False)
    demo.open()
    frames, times, index = [], [], 5
    for k in range(int(seconds * fps)):
        i420 = cv2.cvtColor(demo.render(index), cv2.COLOR_BGR2YUV_I420)
        frames.append(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))
        times.append(k / fps)
        index += 0 if k % 3 == 2 else 1
    return frames, times


def compare(frames: list[np.ndarray], times: list[float], refs: np.ndarray, width: int, height: int) -> dict[str, Any]:
    if not frames:
        return {"ok": False, "reason": "no frames read"}
    sigs = np.stack([_signature(f) for f in frames])
    scores = sigs @ refs.T
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(frames)), best]
    steps = np.diff(best)
    sizes = {f"{f.shape[1]}x{f.shape[0]}" for f in frames}
    span = times[-1] - times[0]
    report: dict[str, Any] = {
        "frames_read": len(frames),
        "read_fps": round((len(frames) - 1) / span, 2) if span > 0 else None,
        "sizes": sorted(sizes),
        "correlation_p50": round(float(np.median(best_score)), 4),
        "correlation_min": round(float(best_score.min()), 4),
        "matched_first": int(best[0]),
        "matched_last": int(best[-1]),
        "forward_steps": round(float((steps >= 0).mean()), 3) if steps.size else None,
        "repeated_reads": int((steps == 0).sum()),
    }
    problems = []
    if sizes != {f"{width}x{height}"}:
        problems.append(f"size {sorted(sizes)} != {width}x{height}")
    if best_score.min() < MIN_CORRELATION:
        problems.append(f"a frame matches no demo frame (correlation {best_score.min():.3f} < {MIN_CORRELATION})")
    if best[-1] <= best[0]:
        problems.append("the picture never advanced: the camera is frozen")
    if steps.size and (steps >= 0).mean() < 0.9:
        problems.append("frames arrive out of order")
    report["ok"] = not problems
    report["problems"] = problems
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="device to read (default: the v4l2loopback device labelled Mirage)")
    p.add_argument("--spawn", action="store_true", help="start mirage --headless --source demo --virtual-camera")
    p.add_argument("--simulate", action="store_true", help="no device: compare an in-process I420 round trip")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to read (default 10)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args(argv)

    proc: subprocess.Popen[bytes] | None = None
    try:
        if args.simulate:
            frames, times = simulated_frames(args.width, args.height, args.fps, min(args.seconds, 4.0))
            refs_needed = len(frames) + 10
        else:
            device = args.device or find_mirage_device()
            if device is None:
                print(f"No v4l2loopback device labelled Mirage. {available_backend_hint('Linux')}", file=sys.stderr)
                return 1
            if args.spawn:
                cmd = [
                    sys.executable,
                    "-m",
                    "mirage_desktop.app",
                    "--headless",
                    "--source",
                    "demo",
                    "--virtual-camera",
                    "--quiet",
                    "--seconds",
                    str(args.seconds + 20),
                    "--width",
                    str(args.width),
                    "--height",
                    str(args.height),
                    "--fps",
                    str(args.fps),
                ]
                print("starting:", " ".join(cmd), file=sys.stderr)
                proc = subprocess.Popen(cmd)
            cap = open_device(device, timeout=20.0)
            try:
                frames, times = read_frames(cap, args.seconds)
            finally:
                cap.release()
            # the demo's frame number grows with Mirage's uptime: cover it with margin
            refs_needed = int((args.seconds + 30.0) * args.fps)
        print(f"rendering {refs_needed} reference demo frames...", file=sys.stderr)
        refs = reference_signatures(args.width, args.height, args.fps, refs_needed)
        report = compare(frames, times, refs, args.width, args.height)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
