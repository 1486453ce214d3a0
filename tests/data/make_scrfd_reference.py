"""Writes scrfd_reference.json: InsightFace's own SCRFD class on the images of tests/face_images.py.

Run once (needs ``pip install insightface``; it is not a dependency of the app or the tests):
    python tests/data/make_scrfd_reference.py
The tests compare our detector against the stored numbers, so they never need InsightFace.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(HERE.parent))

import insightface
import onnxruntime
from face_images import REFERENCE_CASES, reference_images
from insightface.model_zoo.scrfd import SCRFD


def main() -> None:
    images = reference_images(SHARED)
    cases = []
    for model, name, det_size in REFERENCE_CASES:
        detector = SCRFD(model_file=str(SHARED / "models" / model))
        detector.prepare(-1, det_thresh=0.5, nms_thresh=0.4)  # -1: CPU
        det, kps = detector.detect(images[name], input_size=(det_size, det_size))
        faces = [
            {
                "box": [float(v) for v in det[i, :4]],
                "score": float(det[i, 4]),
                "kps": [[float(x), float(y)] for x, y in kps[i]],
            }
            for i in range(det.shape[0])
        ]
        cases.append({"model": model, "image": name, "det_size": det_size, "faces": faces})
        print(model, name, det_size, len(faces), [round(f["score"], 3) for f in faces])
    out = {
        "generator": f"insightface {insightface.__version__} insightface.model_zoo.scrfd.SCRFD.detect, "
        f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider, det_thresh 0.5, nms_thresh 0.4",
        "images": "tests/face_images.py reference_images() from ../shared/media/astronaut.png",
        "cases": cases,
    }
    (HERE / "scrfd_reference.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
