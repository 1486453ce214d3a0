"""The face stage with and without the landmark models: which face drives (picked, else the largest, kept when
others come and go), the 203 points on every frame, and SCRFD alone when the landmark files are missing.

The landmark models here are the geometry kit's stand-ins: deterministic and face-shaped but not face-accurate, so
the assertions are about which face is followed and what runs, not about where its eyes are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_images import BACKGROUND, astronaut
from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.liveportrait.landmark_tracker import LandmarkTracker, similarity_fit
from mirage_desktop.liveportrait.geometry_conformance import load_generator
from mirage_desktop.models.registry import landmark_paths
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.vision.box_tracker import FaceTracker


def _models(root: Path, shared: Path, landmarks: bool) -> Path:
    (root / "scrfd").mkdir(parents=True)
    shutil.copy(shared / "models" / "scrfd_2.5g.onnx", root / "scrfd" / "scrfd_2.5g_bnkps.onnx")
    if landmarks:
        written = load_generator(shared / "liveportrait" / "geometry").write_models(str(root / "tmp"), salt="")
        for name, target in landmark_paths(root).items():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(written[name], target)
    return root


def _stage(models: Path) -> FaceDetectionStage:
    stage = FaceDetectionStage(Settings(models_dir=models, enable_scrfd=True, device="cpu"))
    assert stage.ensure_ready(block=True), stage.reason
    return stage


def _frame(shared: Path, heads: list[tuple[float, int, int]]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 1280x720 grey frame with the astronaut's head at each (scale, x, y) and where each head was put."""
    head = astronaut(shared)[0:280, 70:390]
    frame = np.full((720, 1280, 3), BACKGROUND, np.uint8)
    spots = []
    for scale, x, y in heads:
        h = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame[y : y + h.shape[0], x : x + h.shape[1]] = h
        spots.append((x, y, x + h.shape[1], y + h.shape[0]))
    frame.flags.writeable = False
    return frame, spots


def _inside(box: np.ndarray, spot: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return spot[0] <= cx <= spot[2] and spot[1] <= cy <= spot[3]


@pytest.fixture(scope="module", params=[True, False], ids=["landmarks", "scrfd-only"])
def face_stage(request, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FaceDetectionStage:
    return _stage(_models(tmp_path_factory.mktemp("models"), shared_dir, request.param))


def test_picked_face_stays_the_driver_when_a_larger_one_comes(face_stage: FaceDetectionStage, shared_dir: Path) -> None:
    two, (small, medium) = _frame(shared_dir, [(0.6, 60, 200), (0.8, 500, 150)])
    three, (_, _, large) = _frame(shared_dir, [(0.6, 60, 200), (0.8, 500, 150), (1.2, 880, 200)])
    if isinstance(face_stage.tracker, LandmarkTracker):
        face_stage.tracker.check_every = 2  # SCRFD re-checks the track often: the pick must survive it too
    t = 0.0
    frame = face_stage.process(Frame(image=two, index=0, t_capture=t))
    assert frame.face is not None and _inside(frame.face.box, medium)  # no pick: the largest drives
    assert face_stage.stats()["faces"] == 2
    face_stage.pick_face((small[0] + small[2]) / 2, (small[1] + small[3]) / 2)
    for i, image in enumerate([two, two, three, three, three, three, two, three]):
        t += 1 / 30
        frame = face_stage.process(Frame(image=image, index=i + 1, t_capture=t))
        assert frame.face is not None and _inside(frame.face.box, small), i
        assert _inside(np.asarray(face_stage.stats()["driver_box"]), small)
    assert face_stage.stats()["faces"] in (2, 3)
    # a click on no face changes nothing; a click on the large face moves the driver there
    face_stage.pick_face(5, 5)
    frame = face_stage.process(Frame(image=three, index=20, t_capture=t + 0.03))
    assert _inside(frame.face.box, small)
    face_stage.pick_face((large[0] + large[2]) / 2, (large[1] + large[3]) / 2)
    frame = face_stage.process(Frame(image=three, index=21, t_capture=t + 0.06))
    assert _inside(frame.face.box, large)


def test_without_a_pick_a_new_track_takes_the_largest(face_stage: FaceDetectionStage, shared_dir: Path) -> None:
    three, (_, _, large) = _frame(shared_dir, [(0.6, 60, 200), (0.8, 500, 150), (1.2, 880, 200)])
    face_stage.tracker.reset()
    frame = face_stage.process(Frame(image=three, index=0, t_capture=100.0))
    assert frame.face is not None and _inside(frame.face.box, large)


def test_landmarks_ride_on_every_frame_or_are_off_with_the_download_named(
    face_stage: FaceDetectionStage, shared_dir: Path
) -> None:
    two, _ = _frame(shared_dir, [(0.6, 60, 200), (0.8, 500, 150)])
    face_stage.tracker.reset()
    faces = [face_stage.process(Frame(image=two, index=i, t_capture=200 + i / 30)).face for i in range(4)]
    assert all(f is not None for f in faces)
    if isinstance(face_stage.tracker, LandmarkTracker):
        assert face_stage.stats()["landmarks"] is True
        for f in faces:
            assert f.lmk203 is not None and f.lmk203.shape == (203, 2) and np.isfinite(f.lmk203).all()
        assert faces[0].lmk106 is not None and faces[0].lmk106.shape == (106, 2)  # the acquisition frame
        assert face_stage.tracker.mode == "track" and face_stage.tracker.landmark_steps >= 3  # SCRFD did not run
        assert len({f.track_id for f in faces}) == 1
    else:
        assert isinstance(face_stage.tracker, FaceTracker)
        assert all(f.lmk203 is None for f in faces)
        assert face_stage.stats()["landmarks"] is False
        assert "mirage-models download liveportrait" in face_stage.landmarks_reason
        assert "2d106det.onnx" in face_stage.landmarks_reason


def test_similarity_fit_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(203, 2)) * 50 + 300
    a = np.deg2rad(12.0)
    rot = 1.3 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ rot.T + [15.0, -7.0]
    s, c, sn, shift = similarity_fit(src, dst)
    assert s == pytest.approx(1.3) and np.arctan2(sn, c) == pytest.approx(a)
    np.testing.assert_allclose(shift, [15.0, -7.0], atol=1e-9)
