"""Resident size and speed of the LivePortrait ONNX Runtime backend on a CPU, with the process's one shared CPU
arena (what the app does) or each session's own arena (ORT's default, ``--own``).

Per-session arenas grow in powers of two and reserve more than the runs use; the pages later runs touch for the
first time show as RSS creeping up long after start. Two runs, one per mode, on the same machine make the
comparison; each prints the resident size (free heap pages handed back first, where glibc's malloc serves the
process) after every step.

    python benchmarks/ort_arena.py            # shared arena
    python benchmarks/ort_arena.py --own      # each session its own
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mirage_desktop.vision.onnx_session as osess  # noqa: E402
from liveportrait import KIT, cases, write_synthetic  # noqa: E402
from mirage_desktop.liveportrait.backends import build_networks  # noqa: E402
from mirage_desktop.liveportrait.loader import load_networks  # noqa: E402
from mirage_desktop.liveportrait.runner import LivePortrait, rgb_to_tensor  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--own", action="store_true", help="each session its own arena (ORT's default)")
    ap.add_argument("--runs", type=int, default=6, help="timed driven frames")
    ap.add_argument("--cache-dir", type=Path, help="ONNX cache (default: the user cache dir)")
    args = ap.parse_args()
    if args.own:
        osess.share_cpu_arena = lambda: False
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: its free pages are the allocator's business
        trim = None
    process = psutil.Process()

    def show(step: str) -> None:
        if trim is not None:
            trim(0)
        print(f"{step:24s} RSS {process.memory_info().rss / 2**20:7.1f} MB", flush=True)

    dev = torch.device("cpu")
    print("arena:", "each session its own" if args.own else "one, shared")
    with tempfile.TemporaryDirectory() as tmp:
        nets = load_networks(write_synthetic(Path(tmp)), dev)
    show("weights loaded")
    lp = LivePortrait(build_networks(nets, dev, "onnxruntime", "fp32", cache_dir=args.cache_dir), dev)
    show("backend built")
    with np.load(KIT / "golden" / "inputs.npz") as data:
        src, drv = rgb_to_tensor(data["source_rgb"], dev), rgb_to_tensor(data["driving_rgb"][1], dev)
    with torch.inference_mode():
        steps = cases(lp, src, drv)
        show("source prepared")
        for name in ("F", "M", "W", "G", "stitching", "driven frame", "driven frame"):
            steps[name]()
            show("after " + name)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            steps["driven frame"]()
            times.append((time.perf_counter() - start) * 1000)
    print(f"driven frame: median {statistics.median(times):.0f} ms, min {min(times):.0f} ms ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
