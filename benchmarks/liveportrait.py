"""Speed and memory of our LivePortrait networks: F, M, W, G, stitching and one driven frame, per backend.

    python benchmarks/liveportrait.py [--weights DIR] [--device cpu|cuda] [--backend torch|onnxruntime|auto]
        [--precision fp32|bf16|fp16] [--half] [--runs 5] [--threads 2] [--json OUT] [--no-baseline] [--steady SECONDS]

Without ``--weights`` it writes the conformance kit's synthetic checkpoints (``../shared/liveportrait``) to a
temporary folder; weight values do not change the speed. The chosen backend/precision is timed interleaved with plain
PyTorch fp32 built from the same loaded weights (one baseline call, one candidate call, repeated), so the ratio holds
on a shared machine whose speed drifts. Prints the median, min and max of ``--runs`` timed runs after one warm-up, the
multiply-accumulates per call (so machines of different speed can be compared: the official modules do the same
work), the process's peak memory so far (RSS on CPU, torch's peak allocation on CUDA), next to the kit README's CPU
baseline for the official modules (2-vCPU AMD EPYC, torch 2.13 CPU, 2 threads). ``--json OUT`` writes
``{"driven_frame_ms", "modules": {"F", "M", "W", "G"}, "backend": {module: backend}, "precision"}`` of the candidate.

``--steady SECONDS`` instead drives frames back to back for that long on a worker thread, as the engine's avatar
stage does, and samples RSS every 0.25 s from a second thread: it prints the frame median and the resident size's
mean, spread and range over the last two thirds (``--json OUT`` then writes those figures and the backends). That
spread is what the soak's raw RSS samples carry (PyTorch on a CPU allocates and frees a frame's activations in the
heap; ONNX Runtime plans them once in its arena).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from mirage_desktop.liveportrait.backends import build_networks
from mirage_desktop.liveportrait.backends.torch_backend import check_device
from mirage_desktop.liveportrait.loader import load_networks
from mirage_desktop.liveportrait.runner import DriveOptions, LivePortrait, SourceState, rgb_to_tensor

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pair(
    base: Callable[[], object] | None, cand: Callable[[], object], runs: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Warm both up once, then alternate timed calls; returns (baseline ms, candidate ms)."""
    fns = [f for f in (base, cand) if f is not None]
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[i].append((time.perf_counter() - start) * 1000)
    return (times[0], times[1]) if base is not None else ([], times[0])


def cases(lp: LivePortrait, src: torch.Tensor, drv: torch.Tensor) -> dict[str, Callable[[], object]]:
    """One callable per benchmarked step, on ``lp``'s backends."""
    source: SourceState = lp.prepare_source(src)
    reference = lp.motion_info(src)
    x_final = lp.drive(source, lp.motion_info(drv), reference)
    warped = lp.warp(source.feature, source.x_s, x_final)
    stitch_in = torch.cat([source.x_s.reshape(1, -1), x_final.reshape(1, -1)], dim=1)
    nets = lp.networks

    def frame() -> np.ndarray:
        info = lp.motion_info(drv)
        return lp.to_uint8(lp.render(source, lp.drive(source, info, reference, DriveOptions())))

    return {
        "F": lambda: nets.appearance(src),
        "M": lambda: nets.motion(drv),
        "W": lambda: lp.warp(source.feature, source.x_s, x_final),
        "G": lambda: lp.decode(warped.out),
        "stitching": lambda: nets.stitching(stitch_in),
        "driven frame": frame,
    }


def steady(frame: Callable[[], object], seconds: float) -> dict[str, float]:
    """Frames back to back on a worker thread for ``seconds``, RSS sampled every 0.25 s."""
    samples: list[tuple[float, float]] = []
    times: list[float] = []
    done = threading.Event()
    process = psutil.Process()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(0.25):
            samples.append((time.monotonic() - t0, process.memory_info().rss / 2**20))

    def work() -> None:
        with torch.inference_mode():
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                start = time.perf_counter()
                frame()
                times.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=work)]
    for t in threads:
        t.start()
    threads[1].join()
    done.set()
    threads[0].join()
    settled = [r for t, r in samples if t >= seconds / 3] or [r for _, r in samples]  # after the first frames
    return {"frames": len(times), "frame_ms": statistics.median(times[1:] or times),
            "rss_mean_mb": statistics.fmean(settled), "rss_std_mb": statistics.pstdev(settled),
            "rss_min_mb": min(settled), "rss_max_mb": max(settled)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, help="official tree or flat folder (default: synthetic kit weights)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "auto"))
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), help="W and G precision (default fp32)")
    ap.add_argument("--half", action="store_true", help="the older spelling of --precision fp16 (CUDA)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, metavar="OUT", help="write the candidate's medians as JSON")
    ap.add_argument("--no-baseline", action="store_true", help="skip the interleaved PyTorch fp32 baseline")
    ap.add_argument("--cache-dir", type=Path, help="ONNX/measurement cache (default: the user cache dir)")
    ap.add_argument("--steady", type=float, metavar="SECONDS",
                    help="drive frames for this long and report how steady the resident size is (no timing table)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    precision = args.precision or ("fp16" if args.half else "fp32")
    dev = check_device(args.device)

    def progress(message: str, fraction: float) -> None:
        print(f"  {message} ({fraction:.0%})", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or write_synthetic(Path(tmp))
        t0 = time.perf_counter()
        nets = load_networks(weights, dev)
        load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lp = LivePortrait(
        build_networks(nets, dev, args.backend, precision, cache_dir=args.cache_dir, progress=progress), dev
    )
    build_s = time.perf_counter() - t0
    base = None if args.no_baseline or args.steady else LivePortrait(build_networks(nets, dev, "torch", "fp32"), dev)
    rng = np.random.default_rng(0)
    if KIT.is_dir():
        with np.load(KIT / "golden" / "inputs.npz") as data:
            src_rgb, drv_rgb = data["source_rgb"], data["driving_rgb"][1]
    else:
        src_rgb, drv_rgb = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2))
    src, drv = rgb_to_tensor(src_rgb, dev), rgb_to_tensor(drv_rgb, dev)
    with torch.inference_mode():
        cand_cases = cases(lp, src, drv)
        base_cases = cases(base, src, drv) if base is not None else {}
    chosen = lp.networks.choices()
    backends = {m: chosen[m].split()[0] for m in chosen}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device {name}, torch {torch.__version__}, backend {args.backend}, precision {precision}, "
        f"load {load_s:.1f} s, backend setup {build_s:.1f} s, {args.runs} runs interleaved with PyTorch fp32"
    )
    print("modules: " + ", ".join(f"{m}={c}" for m, c in chosen.items()))
    for reason in lp.networks.all_reasons():
        print(f"note: {reason}")
    if args.steady:
        got = steady(cand_cases["driven frame"], args.steady)
        print(f"{got['frames']} driven frames in {args.steady:g} s, median {got['frame_ms']:.0f} ms; RSS after the "
              f"first third: mean {got['rss_mean_mb']:.0f} MB, spread (std) {got['rss_std_mb']:.1f} MB, "
              f"{got['rss_min_mb']:.0f}-{got['rss_max_mb']:.0f} MB")
        if args.json:
            args.json.write_text(json.dumps({**got, "backend": backends}) + "\n")
        return 0
    mem = "peak alloc MB" if dev.type == "cuda" else "peak RSS MB"
    print(
        f"{'module':<13} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'torch32 ms':>10} {'ratio':>6} {mem:>13} "
        f"{'GMAC':>6} {'official CPU ms':>16}"
    )
    medians: dict[str, float] = {}
    with torch.inference_mode():
        for label, fn in cand_cases.items():
            with FlopCounterMode(display=False) as counter:  # the work (PyTorch ops only), to compare machines
                (base_cases.get(label) or fn)()
            gmac = counter.get_total_flops() / 2e9
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            base_t, times = timed_pair(base_cases.get(label), fn, args.runs, dev)
            median = statistics.median(times)
            medians[label] = median
            ref = statistics.median(base_t) if base_t else float("nan")
            official = BASELINE.get(label, (BASELINE_FRAME_MS, 0))[0]
            print(
                f"{label:<13} {median:>10.3f} {min(times):>9.3f} {max(times):>9.3f} {ref:>10.3f} "
                f"{median / ref:>6.2f} {peak_mb(dev):>13.0f} {gmac:>6.1f} {official:>16g}",
                flush=True,
            )
    if args.json:
        out = {
            "driven_frame_ms": round(medians["driven frame"], 3),
            "modules": {m: round(medians[m], 3) for m in ("F", "M", "W", "G")},
            "backend": backends,
            "precision": precision,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
