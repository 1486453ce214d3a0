"""Per-frame cost of face detection at 720p: our SCRFD runner (full detection and tracking mode) side by side with
InsightFace's own ``insightface.model_zoo.scrfd.SCRFD`` class, on the same model files and frames, in one run.

    pip install insightface --no-deps   # benchmark only (the `reference` extra): with its deps it replaces onnxruntime-gpu
    python benchmarks/face_detection.py [--frames 60] [--rounds 3] [--device cpu] [--check]

Frames: the astronaut photo from ../shared/media moving across a 1280x720 frame (shift, zoom, tilt).
Timing: ``time.perf_counter`` around one call per frame, preprocessing and decoding included. The two
implementations run in alternating blocks (never interleaved frame by frame: ORT's spinning worker threads of one
session would steal the CPU from the other), each block after a short warm-up; figures are medians over all frames.
With ``--check`` the exit code is 1 when a speed bar is missed (full < InsightFace, tracking < 1/3 of full).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from mirage_desktop.vision.scrfd import Scratch, SCRFDDetector
from mirage_desktop.vision.box_tracker import FaceTracker

MODELS = ("scrfd_500m_bnkps.onnx", "scrfd_2.5g.onnx")
WARMUP = 3


def moving_face(count: int, size: tuple[int, int] = (1280, 720)) -> list[np.ndarray]:
    """The astronaut's head moving across a 720p frame, one lap in ``count`` frames."""
    photo = cv2.imread(str(SHARED / "media" / "astronaut.png"), cv2.IMREAD_COLOR)
    if photo is None:
        raise SystemExit(f"error: cannot read {SHARED / 'media' / 'astronaut.png'}; is ../shared next to the checkout?")
    width, height = size
    frames = []
    for i in range(count):
        a = 2.0 * math.pi * i / count
        matrix = cv2.getRotationMatrix2D((226.0, 120.0), 8.0 * math.sin(2.0 * a), 1.0 + 0.2 * math.sin(a))
        matrix[:, 2] += (
            width / 2 + 0.23 * width * math.sin(a) - 226.0,
            height / 2 + 0.11 * height * math.sin(2 * a) - 120.0,
        )
        frames.append(cv2.warpAffine(photo, matrix, size, borderValue=(90, 90, 90)))
    return frames


def time_block(step: Callable[[int, np.ndarray], object], frames: list[np.ndarray], out: list[float]) -> None:
    for i in range(WARMUP):
        step(i, frames[i % len(frames)])
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        step(i, frame)
        out.append((time.perf_counter() - t0) * 1000.0)


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def bench_model(
    path: Path, frames: list[np.ndarray], rounds: int, device: str, reference_class: type
) -> dict[str, object]:
    """Time ours (full, tracking) and InsightFace's class on one model file, in alternating blocks."""
    ours = SCRFDDetector(path, device=device)
    theirs = reference_class(model_file=str(path))
    theirs.prepare(-1 if ours.provider == "CPUExecutionProvider" else 0, det_thresh=0.5, nms_thresh=0.4)
    scratch = Scratch()
    tracker = FaceTracker(ours)
    clock = {"t": 0.0}

    def full(i: int, frame: np.ndarray) -> object:
        return ours.detect_arrays(frame, 640, scratch=scratch)

    def reference(i: int, frame: np.ndarray) -> object:
        return theirs.detect(frame, input_size=(640, 640))

    def track(i: int, frame: np.ndarray) -> object:
        clock["t"] += 1 / 30
        return tracker.update(frame, clock["t"])

    t_full: list[float] = []
    t_ref: list[float] = []
    t_track: list[float] = []
    for _ in range(rounds):
        time_block(full, frames, t_full)
        time_block(reference, frames, t_ref)
        time_block(track, frames, t_track)
    s_full, s_ref, s_track = summary(t_full), summary(t_ref), summary(t_track)
    return {
        "provider": ours.provider,
        "input": ours.describe_input(),
        "ours_full": s_full,
        "insightface_full": s_ref,
        "ours_track": s_track,
        "full_vs_insightface": round(s_full["p50_ms"] / s_ref["p50_ms"], 3),
        "track_vs_full": round(s_track["p50_ms"] / s_full["p50_ms"], 3),
        "track_mean_vs_full_mean": round(s_track["mean_ms"] / s_full["mean_ms"], 3),
        "tracker": {
            "frames": tracker.frames,
            "full_detections": tracker.full_detections,
            "roi_detections": tracker.roi_detections,
            "flow_steps": tracker.flow_steps,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per implementation")
    parser.add_argument("--device", default="cpu", choices=("cpu", "auto"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a speed bar is missed")
    args = parser.parse_args()

    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    try:
        import insightface
        from insightface.model_zoo.scrfd import SCRFD
    except ImportError as exc:
        print(
            f"error: InsightFace is needed for the comparison ({exc}); pip install insightface --no-deps",
            file=sys.stderr,
        )
        return 2

    frames = moving_face(args.frames)
    results = {
        model: bench_model(SHARED / "models" / model, frames, args.rounds, args.device, SCRFD) for model in MODELS
    }

    print(
        f"SCRFD per-frame cost, 1280x720 moving face, {args.frames} frames x {args.rounds} rounds; "
        f"onnxruntime {ort.__version__}, insightface {insightface.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    header = f"{'model':<24}{'provider':<22}{'mode':<28}{'p50 ms':>9}{'p90 ms':>9}{'mean ms':>9}{'ratio':>9}"
    print(header)
    print("-" * len(header))
    ok = True
    for model, r in results.items():
        rows = [
            ("InsightFace SCRFD, 640", r["insightface_full"], "1.000"),
            ("ours full, 640", r["ours_full"], f"{r['full_vs_insightface']:.3f}"),
            ("ours tracking (vs ours full)", r["ours_track"], f"{r['track_mean_vs_full_mean']:.3f}"),
        ]
        for mode, s, ratio in rows:
            assert isinstance(s, dict)
            print(
                f"{model:<24}{r['provider']!s:<22}{mode:<28}{s['p50_ms']:>9}{s['p90_ms']:>9}{s['mean_ms']:>9}{ratio:>9}"
            )
        t = r["tracker"]
        assert isinstance(t, dict)
        print(
            f"{'':<24}tracker: {t['full_detections']} full, {t['roi_detections']} region, {t['flow_steps']} flow of {t['frames']} frames"
        )
        full_ok = float(r["full_vs_insightface"]) < 1.0  # type: ignore[arg-type]
        track_ok = float(r["track_mean_vs_full_mean"]) < 1 / 3  # type: ignore[arg-type]
        print(
            f"{'':<24}full vs InsightFace {r['full_vs_insightface']} ({'PASS' if full_ok else 'FAIL'} < 1.0), "
            f"tracking vs full {r['track_mean_vs_full_mean']} ({'PASS' if track_ok else 'FAIL'} < 0.333)"
        )
        ok = ok and full_ok and track_ok
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
