"""Command-line check of the SCRFD detector: ``python -m mirage_desktop.vision.detect_cli --model M IMAGE...``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirage_desktop.vision.face import Face
from mirage_desktop.vision.images import ImageReadError, read_image
from mirage_desktop.vision.scrfd import DEFAULT_DET_SIZE, SCRFDDetector, SCRFDModelError


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mirage_desktop.vision.detect_cli",
        description="Detect faces with an SCRFD model. With --json, prints one JSON object per image per line: "
        '{"image": PATH, "faces": [{"box": [x1, y1, x2, y2], "score": s, "kps": [[x, y] x5]}], "median_ms": t}, '
        "where median_ms is the median time of one detection over --repeat runs, preprocessing and decoding "
        "included (reading the file is not).",
    )
    parser.add_argument("--model", required=True, type=Path, help="SCRFD .onnx file with keypoints")
    parser.add_argument("--det-size", type=int, default=DEFAULT_DET_SIZE, help="square detection size (default 640)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per image for the timing (default 1)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="execution provider")
    parser.add_argument("--json", action="store_true", help="JSON lines output (the format checks rely on)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line check; exit code 2 with one line on stderr for a bad model, image or option."""
    args = _parse_args(argv)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # keep stdout/stderr to our lines; the provider used is in the output
    if args.repeat < 1:
        print(f"error: --repeat {args.repeat} must be at least 1", file=sys.stderr)
        return 2
    try:
        detector = SCRFDDetector(args.model, device=args.device)
        detector.input_size(args.det_size)
        images = [(path, read_image(path)) for path in args.images]
    except (SCRFDModelError, ImageReadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if detector.fixed_size is not None and detector.fixed_size != (args.det_size, args.det_size):
        h, w = detector.fixed_size
        print(f"note: {args.model.name} has a fixed {w}x{h} input; --det-size {args.det_size} ignored", file=sys.stderr)
    for path, image in images:
        times: list[float] = []
        faces: list[Face] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            faces = detector.detect(image, det_size=args.det_size)
            times.append((time.perf_counter() - t0) * 1000.0)
        record: dict[str, Any] = {
            "image": str(path),
            "faces": [
                {
                    "box": [round(float(v), 2) for v in f.box],
                    "score": round(f.score, 4),
                    "kps": [[round(float(x), 2), round(float(y), 2)] for x, y in f.kps],
                }
                for f in faces
            ],
            "median_ms": round(statistics.median(times), 3),
        }
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"{path}: {len(faces)} face(s), {record['median_ms']} ms on {detector.provider}")
            for face in record["faces"]:
                print(f"  box={face['box']} score={face['score']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("MIRAGE_LOG_LEVEL", "WARNING"))
    sys.exit(main())
