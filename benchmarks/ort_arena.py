"""Resident size and speed of the LivePortrait ONNX Runtime backend on a CPU, with the process's one shared CPU
arena (what the app does) or each session's own arena (ORT's default, ``--own``).

Run it on jemalloc, as the app runs (``LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=narenas:2``), so the heap's figures
are there: ``untouched`` is what jemalloc counts as resident but the kernel has not seen touched (heap resident
minus anonymous RSS), the pages later runs can fault in for the first time. Two runs, one per mode, on the same
machine make the comparison; each prints its figures after every step.

    python benchmarks/ort_arena.py            # shared arena
    python benchmarks/ort_arena.py --own      # each session its own
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mirage_desktop.vision.onnx_session as osess  # noqa: E402
from liveportrait import KIT, cases, write_synthetic  # noqa: E402
from mirage_desktop.engine.host_memory import HostMemory  # noqa: E402
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
    host = HostMemory()
    if host.allocator != "jemalloc":
        print("note: not on jemalloc, so `untouched` is n/a; preload libjemalloc.so.2 for the heap's figures")

    def show(step: str) -> None:
        host.trim()
        s = host.snapshot()
        untouched = (s["heap_resident_mb"] - (s["rss_mb"] - s["rss_file_mb"])
                     if host.allocator == "jemalloc" else float("nan"))
        print(f"{step:24s} RSS {s['rss_mb']:7.1f} MB  heap resident {s['heap_resident_mb'] or 0:7.1f}  "
              f"untouched {untouched:7.1f}", flush=True)

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
