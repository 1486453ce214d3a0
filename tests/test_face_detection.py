"""SCRFD detector, tracker and stage: against InsightFace's numbers, letterbox mapping, tracking, bad models, CLI."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from face_images import REFERENCE_CASES, moving_face, place, reference_images

from mirage_desktop.config import Settings
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.vision.scrfd import Scratch, SCRFDDetector, box_iou, nms
from mirage_desktop.vision.box_tracker import FaceTracker, OneEuroFilter
from mirage_desktop.engine.frame import Frame

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
MODELS = ("scrfd_500m_bnkps.onnx", "scrfd_2.5g.onnx")
_detectors: dict[str, SCRFDDetector] = {}


def detector(shared: Path, model: str) -> SCRFDDetector:
    """One CPU session per model for the whole module (loading costs more than the tests)."""
    if model not in _detectors:
        _detectors[model] = SCRFDDetector(shared / "models" / model, device="cpu")
    return _detectors[model]


@pytest.fixture(scope="module")
def images(shared_dir: Path) -> dict[str, np.ndarray]:
    return reference_images(shared_dir)


# ---------------------------------------------------------------------------------------------- accuracy
REFERENCE = json.loads((DATA / "scrfd_reference.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "case", REFERENCE["cases"], ids=[f"{c['model']}-{c['image']}-{c['det_size']}" for c in REFERENCE["cases"]]
)
def test_matches_insightface_reference(shared_dir: Path, images: dict[str, np.ndarray], case: dict) -> None:
    faces = detector(shared_dir, case["model"]).detect(images[case["image"]], det_size=case["det_size"])
    expected = case["faces"]
    assert len(faces) == len(expected), f"{len(faces)} faces != {len(expected)} from InsightFace"
    unused = list(range(len(faces)))
    for ref in expected:
        ref_box = np.array(ref["box"], np.float32)
        best = max(unused, key=lambda i: box_iou(faces[i].box, ref_box))
        unused.remove(best)
        face = faces[best]
        assert box_iou(face.box, ref_box) >= 0.98
        assert np.abs(face.kps - np.array(ref["kps"], np.float32)).max() <= 1.5
        assert abs(face.score - ref["score"]) <= 0.01


def test_reference_covers_every_case() -> None:
    stored = {(c["model"], c["image"], c["det_size"]) for c in REFERENCE["cases"]}
    assert stored == set(REFERENCE_CASES)
    assert any(not c["faces"] for c in REFERENCE["cases"])  # the no-face image is part of it


@pytest.mark.parametrize("model", MODELS)
def test_images_without_a_face_return_none(shared_dir: Path, model: str) -> None:
    det = detector(shared_dir, model)
    flat = np.full((720, 1280, 3), 128, np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert det.detect(flat) == []
    assert det.detect(noise) == []


# ------------------------------------------------------------------------------------------------ mapping
@pytest.mark.parametrize("model", MODELS)
def test_region_detection_maps_back_to_frame_pixels(
    shared_dir: Path, images: dict[str, np.ndarray], model: str
) -> None:
    """Detecting in a region of a frame gives the crop's result shifted by the region's corner."""
    det = detector(shared_dir, model)
    frame = images["wide_1280x720"]
    x0, y0, x1, y1 = 500, 20, 1100, 500  # non-square region around the face
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    in_crop = det.detect(crop)
    in_region = det.detect_arrays(frame, 640, region=(x0, y0, x1, y1), scratch=Scratch())
    assert len(in_crop) == len(in_region) == 1
    np.testing.assert_allclose(in_region.boxes[0], in_crop[0].box + [x0, y0, x0, y0], atol=1e-3)
    np.testing.assert_allclose(in_region.kps[0], in_crop[0].kps + [x0, y0], atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("size", "scale", "offset"),
    [((1280, 720), 1.3, (610.0, 40.0)), ((480, 900), 0.8, (30.0, 420.0)), ((900, 600), 1.0, (333.0, 77.0))],
)
def test_letterbox_follows_a_shifted_and_scaled_face(
    shared_dir: Path, images: dict[str, np.ndarray], model: str, size: tuple[int, int], scale: float,
    offset: tuple[float, float],
) -> None:  # fmt: skip
    """The face found in a placed copy of the photo is the photo's face moved by the same scale and shift."""
    det = detector(shared_dir, model)
    (base,) = det.detect(images["astronaut"])
    (moved,) = det.detect(place(images["astronaut"], size, scale, offset))
    expected_box = base.box * scale + np.array([offset[0], offset[1]] * 2)
    expected_kps = base.kps * scale + np.array(offset)
    assert box_iou(moved.box, expected_box) >= 0.9
    assert np.abs(moved.kps - expected_kps).max() <= 0.06 * (expected_box[2] - expected_box[0])


def test_fixed_and_dynamic_input_sizes(shared_dir: Path, images: dict[str, np.ndarray]) -> None:
    fixed, dynamic = detector(shared_dir, MODELS[0]), detector(shared_dir, MODELS[1])
    assert fixed.fixed_size == (640, 640) and not fixed.dynamic
    assert dynamic.fixed_size is None and dynamic.dynamic
    assert fixed.input_size(320) == (640, 640)  # a fixed export runs at its own size
    assert len(fixed.detect(images["astronaut"], det_size=320)) == 1
    with pytest.raises(ValueError, match="multiple of 32"):
        dynamic.input_size(300)


def test_max_faces_keeps_the_largest(shared_dir: Path, images: dict[str, np.ndarray]) -> None:
    det = detector(shared_dir, MODELS[1])
    small = place(images["astronaut"], (640, 360), 0.45, (20.0, 20.0))
    big = place(images["astronaut"], (640, 360), 0.7, (0.0, 0.0))
    two = np.concatenate([small, big], axis=1)  # two faces of different sizes side by side
    faces = det.detect(two)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    (largest,) = det.detect(two, max_faces=1)
    assert largest.box[0] > 640  # the face in the right half is the bigger one


def test_nms_suppresses_overlaps_and_keeps_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.6], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]


# ----------------------------------------------------------------------------------------------- tracking
def test_one_euro_filter_smooths_jitter_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    still = OneEuroFilter(min_cutoff=0.5, beta=0.1)  # the tracker's defaults
    noisy = 100.0 + rng.normal(0, 1.0, (300, 1))
    out = np.array([still(noisy[i], i / 30) for i in range(300)])
    assert out[30:].std() < 0.6 * noisy[30:].std()  # jitter well below the input's
    moving = OneEuroFilter(min_cutoff=0.5, beta=0.1)
    track = [moving(np.array([10.0 * i]), i / 30)[0] for i in range(60)]
    assert abs(track[-1] - 590.0) < 10.0  # lags a ramp of 300 px/s by less than a frame
    moving.reset()
    assert moving(np.array([5.0]), 3.0)[0] == 5.0  # after a reset the first sample passes unchanged


@pytest.mark.parametrize("smoothing", [False, True], ids=["raw", "smoothed"])
@pytest.mark.parametrize("model", MODELS)
def test_tracker_follows_a_moving_face_with_fewer_full_detections(
    shared_dir: Path, model: str, smoothing: bool
) -> None:
    det = detector(shared_dir, model)
    frames = moving_face(shared_dir, count=60)  # up to ~30 px per frame at the fastest point
    tracker = FaceTracker(det, smoothing=smoothing)
    ious, kps_err = [], []
    for i, image in enumerate(frames):
        tracked = tracker.update(image, i / 30.0)
        (full,) = det.detect(image)
        assert tracked is not None, f"lost the face at frame {i}"
        ious.append(box_iou(tracked.box, full.box))
        kps_err.append(float(np.abs(tracked.kps - full.kps).max() / (full.box[2] - full.box[0])))
    assert tracker.mode == "track"
    assert tracker.full_detections <= math.ceil(len(frames) / tracker.full_every) + 1
    assert tracker.roi_detections + tracker.flow_steps >= len(frames) - tracker.full_detections
    if smoothing:  # the filter trades a little lag at top speed for a still crop
        assert float(np.mean(ious)) >= 0.85 and min(ious) >= 0.7
        assert max(kps_err) <= 0.2
    else:
        assert float(np.mean(ious)) >= 0.9 and min(ious) >= 0.8
        assert max(kps_err) <= 0.1  # keypoints within 10 % of the face width of a full detection


def test_tracker_redetects_after_the_face_left(shared_dir: Path) -> None:
    det = detector(shared_dir, MODELS[1])
    frames = moving_face(shared_dir, count=10)
    tracker = FaceTracker(det)
    assert tracker.update(frames[0], 0.0) is not None
    assert tracker.update(np.full_like(frames[0], 90), 1 / 30) is None
    assert tracker.mode == "detect"
    before = tracker.full_detections
    assert tracker.update(frames[5], 2 / 30) is not None
    assert tracker.full_detections == before + 1


# -------------------------------------------------------------------------------------------------- stage
def _settings(tmp_path: Path, **kw: object) -> Settings:
    settings = Settings(models_dir=tmp_path / "models", **kw)  # type: ignore[arg-type]
    settings.scrfd_dir().mkdir(parents=True, exist_ok=True)
    return settings


def _frame(image: np.ndarray) -> Frame:
    image = image.copy()
    image.flags.writeable = False  # what sources hand out: nobody may write into it
    return Frame(image=image, index=0, t_capture=0.0, camera=image)


def test_stage_honours_the_enable_setting(tmp_path: Path) -> None:
    assert FaceDetectionStage(_settings(tmp_path, enable_scrfd=True)).enabled
    stage = FaceDetectionStage(_settings(tmp_path))
    assert not stage.enabled and stage.reason == "off"
    assert (stage.name, stage.label) == ("scrfd", "Face detection (SCRFD)")


def _write_wrong_inputs_model(path: Path) -> None:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    try:
        torch.onnx.export(torch.nn.Conv2d(1, 2, 3), torch.zeros(1, 1, 32, 32), buf, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - an exporter that needs packages this environment lacks
        pytest.skip(f"cannot export a small ONNX model here: {exc}")
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("kind", ["missing", "truncated", "garbage", "empty", "wrong_inputs"])
def test_stage_with_a_bad_model_gives_a_reason_and_passes_frames(shared_dir: Path, tmp_path: Path, kind: str) -> None:
    settings = _settings(tmp_path, enable_scrfd=True)
    target = settings.scrfd_dir() / DEFAULT_SCRFD_FILE
    real = shared_dir / "models" / MODELS[1]
    if kind == "truncated":
        target.write_bytes(real.read_bytes()[: real.stat().st_size // 3])
    elif kind == "garbage":
        target.write_bytes(b"<html>404 Not Found</html>" * 100)
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "wrong_inputs":
        _write_wrong_inputs_model(target)
    stage = FaceDetectionStage(settings)
    assert not stage.ensure_ready()
    expected = {
        "missing": "SCRFD model missing",
        "truncated": "truncated or corrupt",
        "garbage": "not an ONNX file",
        "empty": "is empty",
        "wrong_inputs": "expected one 1x3xHxW image",
    }[kind]
    assert expected in stage.reason
    assert "mirage-models download scrfd" in stage.reason
    if kind != "missing":
        assert DEFAULT_SCRFD_FILE in stage.reason  # names the bad file
    # The engine passes the frame through a stage that is not ready.
    from mirage_desktop.engine.pipeline import Engine
    from mirage_desktop.engine.sources import DemoSource

    frame = _frame(reference_images(shared_dir)["astronaut"])
    out = Engine(DemoSource(), [stage])._run_stage(stage, frame)
    assert out is frame and out.face is None and not out.face_checked


def test_stage_finds_the_face_without_touching_the_image(shared_dir: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, enable_scrfd=True)
    shutil.copy(shared_dir / "models" / MODELS[0], settings.scrfd_dir() / DEFAULT_SCRFD_FILE)
    stage = FaceDetectionStage(settings)
    assert stage.ensure_ready(), stage.reason
    photo = reference_images(shared_dir)["wide_1280x720"]
    frame = _frame(photo)
    original = frame.image
    out = stage.process(frame)
    assert out.face_checked and out.face is not None
    assert out.image is original and np.array_equal(out.image, photo)
    assert 0.5 < out.face.score <= 1.0 and out.face.kps.shape == (5, 2)
    stats = stage.stats()
    assert stats["provider"] == "CPUExecutionProvider"
    assert stats["model"] == DEFAULT_SCRFD_FILE and stats["face"] is True and stats["mode"] in ("detect", "track")
    json.dumps(stats)

    stage.show_detections = True
    drawn = stage.process(_frame(photo))
    assert drawn.image is not original and not np.array_equal(drawn.image, photo)
    assert np.array_equal(original, photo)  # the drawing went into a copy

    empty = stage.process(_frame(np.full_like(photo, 90)))
    assert empty.face_checked and empty.face is None and stage.stats()["face"] is False
    assert stage.detect_still(photo, max_faces=1)[0].score > 0.5

    stage.process(_frame(photo))  # after the empty frame: a full detection, then tracking
    stage.process(_frame(photo))
    assert stage.stats()["mode"] == "track"
    before = stage.stats()["full_detections"]
    stage.set_enabled(False)
    stage.set_enabled(True)  # back after a pause: the next frame searches the whole frame again
    stage.process(_frame(photo))
    assert stage.stats()["mode"] == "detect" and stage.stats()["full_detections"] == before + 1


def test_stage_uses_settings_model_or_any_valid_file(shared_dir: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, enable_scrfd=True)
    (settings.scrfd_dir() / "a_broken.onnx").write_bytes(b"junk")
    shutil.copy(shared_dir / "models" / MODELS[0], settings.scrfd_dir() / "b_custom.onnx")
    stage = FaceDetectionStage(settings)
    assert stage.ensure_ready(), stage.reason
    assert stage.stats()["model"] == "b_custom.onnx"

    chosen = _settings(tmp_path / "other", enable_scrfd=True, scrfd_model=shared_dir / "models" / MODELS[1])
    stage = FaceDetectionStage(chosen)
    assert stage.ensure_ready(), stage.reason
    assert stage.stats()["model"] == MODELS[1]

    missing = _settings(tmp_path / "third", enable_scrfd=True, scrfd_model=tmp_path / "nope.onnx")
    stage = FaceDetectionStage(missing)
    assert not stage.ensure_ready()
    assert "SCRFD model missing" in stage.reason and "nope.onnx" in stage.reason


# ---------------------------------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirage_desktop.vision.detect_cli", *args],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip


def test_cli_prints_one_json_object_per_image(shared_dir: Path, tmp_path: Path) -> None:
    photo = shared_dir / "media" / "astronaut.png"
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    result = _cli("--model", str(shared_dir / "models" / MODELS[1]), "--repeat", "3", "--json", str(photo), str(blank))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in lines] == [str(photo), str(blank)]
    assert set(lines[0]) == {"image", "faces", "median_ms"}
    (face,) = lines[0]["faces"]
    assert set(face) == {"box", "score", "kps"}
    assert len(face["box"]) == 4 and len(face["kps"]) == 5 and all(len(p) == 2 for p in face["kps"])
    ref = next(
        c for c in REFERENCE["cases"] if c["model"] == MODELS[1] and c["image"] == "astronaut" and c["det_size"] == 640
    )
    assert box_iou(np.array(face["box"]), np.array(ref["faces"][0]["box"])) >= 0.98
    assert lines[1]["faces"] == [] and lines[0]["median_ms"] > 0


@pytest.mark.parametrize("bad", ["model", "image", "repeat"])
def test_cli_bad_input_exits_2_with_one_line(shared_dir: Path, tmp_path: Path, bad: str) -> None:
    model = shared_dir / "models" / MODELS[0]
    image = shared_dir / "media" / "astronaut.png"
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    args = {
        "model": ["--model", str(tmp_path / "missing.onnx"), "--json", str(image)],
        "image": ["--model", str(model), "--device", "cpu", "--json", str(not_image)],
        "repeat": ["--model", str(model), "--repeat", "0", "--json", str(image)],
    }[bad]
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
