"""Speed and memory of our LivePortrait networks: F, M, W, G, stitching and one driven frame.

    python benchmarks/liveportrait.py [--weights DIR] [--device cpu|cuda] [--half] [--runs 5] [--threads 2]

Without ``--weights`` it writes the conformance kit's synthetic checkpoints (``../shared/liveportrait``) to a
temporary folder; weight values do not change the speed. Prints the median, min and max of ``--runs`` timed runs after
one warm-up, the multiply-accumulates per call (so machines of different speed can be compared: the official
modules do the same work), and the process's peak memory so far (RSS on CPU, torch's peak allocation per module on CUDA), next to
the kit README's CPU baseline for the official modules (2-vCPU AMD EPYC, torch 2.13 CPU, 2 threads).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mirage_desktop.liveportrait.runner import DriveOptions, LivePortrait, rgb_to_tensor

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "liveportrait"
#: the kit README's CPU baseline (official modules, each in its own process): median ms, peak RSS MB
BASELINE = {"F": (245, 422), "M": (103, 504), "W": (1026, 722), "G": (2888, 1243), "stitching": (0.024, 291)}
BASELINE_FRAME_MS = 4000  # "a driven frame (M, stitching, W, G) costs about 4 s on this CPU"


def write_synthetic(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("synth_weights", KIT / "synth_weights.py")
    if spec is None or spec.loader is None or not KIT.is_dir():
        sys.exit(f"no --weights given and the kit is not at {KIT}")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    synth.write_checkpoints(str(out))
    return out


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> tuple[list[float], float]:
    """Warm up once, then time ``runs`` calls (synchronising CUDA around each); returns ms and peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return times, peak_mb(device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, help="official tree or flat folder (default: synthetic kit weights)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--half", action="store_true", help="float16 autocast for W and G (CUDA)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or write_synthetic(Path(tmp))
        t0 = time.perf_counter()
        lp = LivePortrait.load(weights, device=args.device, half=args.half)
        load_s = time.perf_counter() - t0
    dev = lp.device
    rng = np.random.default_rng(0)
    if KIT.is_dir():
        with np.load(KIT / "golden" / "inputs.npz") as data:
            src_rgb, drv_rgb = data["source_rgb"], data["driving_rgb"][1]
    else:
        src_rgb, drv_rgb = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2))
    src, drv = rgb_to_tensor(src_rgb, dev), rgb_to_tensor(drv_rgb, dev)
    source = lp.prepare_source(src)
    reference = lp.motion_info(src)
    driving = lp.motion_info(drv)
    x_final = lp.drive(source, driving, reference)
    warped = lp.warp(source.feature, source.x_s, x_final)
    stitch_in = torch.cat([source.x_s.reshape(1, -1), x_final.reshape(1, -1)], dim=1)
    nets = lp.networks

    def frame() -> np.ndarray:
        info = lp.motion_info(drv)
        return lp.to_uint8(lp.render(source, lp.drive(source, info, reference, DriveOptions())))

    cases: list[tuple[str, Callable[[], object]]] = [
        ("F", lambda: nets.appearance(src)),
        ("M", lambda: nets.motion(drv)),
        ("W", lambda: lp.warp(source.feature, source.x_s, x_final)),
        ("G", lambda: lp.decode(warped.out)),
        ("stitching", lambda: nets.stitching(stitch_in)),
        ("driven frame", frame),
    ]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {name}, torch {torch.__version__}, half={args.half}, load {load_s:.1f} s, {args.runs} runs")
    mem = "peak alloc MB" if dev.type == "cuda" else "peak RSS MB"
    print(
        f"{'module':<13} {'median ms':>10} {'min ms':>9} {'max ms':>9} {mem:>13} {'GMAC':>7} {'GMAC/s':>7} "
        f"{'official CPU ms':>16}"
    )
    with torch.inference_mode():
        for label, fn in cases:
            with FlopCounterMode(display=False) as counter:  # the work, to compare machines of different speed
                fn()
            gmac = counter.get_total_flops() / 2e9
            times, peak = timed(fn, args.runs, dev)
            median = statistics.median(times)
            base = BASELINE.get(label, (BASELINE_FRAME_MS, 0))[0]
            print(
                f"{label:<13} {median:>10.3f} {min(times):>9.3f} {max(times):>9.3f} {peak:>13.0f} {gmac:>7.1f} "
                f"{gmac / median * 1000:>7.1f} {base:>16g}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
