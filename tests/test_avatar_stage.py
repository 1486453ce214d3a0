"""The live avatar stage with the kit's synthetic LivePortrait weights (the only ones here), the real SCRFD model,
a real portrait and a real face moving in front of the "camera"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mirage_desktop.config import Settings, bundled_avatar
from mirage_desktop.stages.avatar.stage import AvatarError, AvatarStage
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.sources import DemoSource

pytestmark = pytest.mark.slow


def make_stage(models: Path, **overrides) -> AvatarStage:
    # PyTorch fp32 unless a test asks: the backends have their own tests, and auto measures for minutes on 2 cores
    overrides = {"liveportrait_backend": "torch", "liveportrait_precision": "fp32", **overrides}
    settings = Settings(models_dir=models, enable_scrfd=True, enable_liveportrait=True, output_width=640,
                        output_height=360, device="cpu", **overrides)
    return AvatarStage(settings, FaceDetectionStage(settings))


@pytest.fixture(scope="module")
def stage(synthetic_models_dir: Path) -> AvatarStage:
    s = make_stage(synthetic_models_dir)
    assert s.ensure_ready(block=True), s.reason
    return s


def test_stage_reproduces_the_kits_golden_images(stage: AvatarStage, shared_dir: Path) -> None:
    golden = shared_dir / "liveportrait" / "golden"
    inputs = np.load(golden / "inputs.npz")
    expected = np.load(golden / "spade_generator.npz")["image_uint8"]
    tol = json.loads((golden / "tolerances.json").read_text())["arrays"]["spade_generator.npz:image_uint8"]
    faces = stage.animate_crops(inputs["source_rgb"], list(inputs["driving_rgb"]))
    assert len(faces) == 3
    for got, want in zip(faces, expected):
        diff = np.abs(got.astype(int) - want.astype(int))
        # end-to-end tolerance of the kit: differences of at most 2, on at most 0.5% of the values
        assert diff.max() <= 2, diff.max()
        assert (diff > 0).mean() <= 0.005, (diff > 0).mean()
    assert tol  # the kit names this array


def test_stage_animates_the_portrait_from_a_moving_face(stage: AvatarStage) -> None:
    camera = DemoSource(640, 360, 30, paced=False)
    camera.open()
    frames = []
    for i in (0, 20, 45):  # reference, then two poses of the moving face
        image = camera.render(i)
        image.flags.writeable = False
        stage.detector.ensure_ready(block=True)
        frame = stage.detector.process(Frame(image=image, index=i, t_capture=i / 30, camera=image))
        assert frame.face is not None and frame.face.lmk203 is not None  # the driving crop comes from these
        frames.append(stage.process(frame).image)
    rest = stage._avatar.paste.rest
    x0, y0, x1, y1 = stage._avatar.paste.roi
    for out in frames:
        assert out.shape == (360, 640, 3) and out.dtype == np.uint8
        assert not np.array_equal(out, rest)  # the face region was replaced
        outside = np.ones(out.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(out[outside], rest[outside])  # the rest of the portrait is untouched
    # the driving face moved, so the avatar did too
    assert np.abs(frames[1].astype(int) - frames[2].astype(int))[y0:y1, x0:x1].mean() > 0.5
    # the animated region is where the portrait's face is (the astronaut's face is in the upper middle)
    changed = np.any(frames[1] != rest, axis=2)
    ys, xs = np.nonzero(changed)
    assert 240 < xs.mean() < 400 and 40 < ys.mean() < 180


def test_lost_face_holds_then_shows_the_avatar_at_rest(stage: AvatarStage) -> None:
    blank = np.zeros((360, 640, 3), np.uint8)
    blank.flags.writeable = False
    t = stage._last_face_t
    held = stage.process(Frame(image=blank, index=1, t_capture=t + 0.1, camera=blank, face_checked=True))
    assert held.image is stage._last_output and "holding" in stage.reason
    later = stage.process(Frame(image=blank, index=2, t_capture=t + 5.0, camera=blank, face_checked=True))
    assert later.image is stage._avatar.paste.rest and "at rest" in stage.reason


def test_bad_portraits_keep_the_previous_avatar(stage: AvatarStage, tmp_path: Path) -> None:
    before = stage._avatar
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not an image")
    with pytest.raises(AvatarError, match="not an image"):
        stage.set_avatar(garbage)
    import cv2

    no_face = tmp_path / "wall.png"
    cv2.imwrite(str(no_face), np.full((300, 300, 3), 128, np.uint8))
    with pytest.raises(AvatarError, match="No face found"):
        stage.set_avatar(no_face)
    assert stage._avatar is before and stage.avatar_path == bundled_avatar()


def test_missing_weights_name_the_download_command(tmp_path: Path) -> None:
    s = make_stage(tmp_path)
    assert s.ensure_ready(block=True) is False
    assert "mirage-models download liveportrait" in s.reason


def test_retargeting_and_pose_options_change_the_driven_keypoints(stage: AvatarStage, shared_dir: Path) -> None:
    from mirage_desktop.liveportrait.runner import rgb_to_tensor

    model = stage.model
    inputs = np.load(shared_dir / "liveportrait" / "golden" / "inputs.npz")
    source = stage._avatar.source
    reference = model.motion_info(rgb_to_tensor(inputs["driving_rgb"][0], model.device))
    driving = model.motion_info(rgb_to_tensor(inputs["driving_rgb"][1], model.device))
    base = stage._drive(model, source, driving, reference)
    try:
        stage.set_options(eyes="target", eye_target=0.8, lips="target", lip_target=0.5)
        retargeted = stage._drive(model, source, driving, reference)
        stage.set_options(eyes="off", lips="off", relative_motion=False)
        absolute = stage._drive(model, source, driving, reference)
    finally:
        stage.set_options(eyes="off", lips="off", relative_motion=True)
    assert base.shape == retargeted.shape == absolute.shape == (1, 21, 3)
    assert (retargeted - base).abs().max() > 1e-4
    assert (absolute - base).abs().max() > 1e-4


def test_source_crop_is_the_official_cropper_on_the_portrait(stage: AvatarStage, synthetic_models_dir: Path) -> None:
    import cv2

    from mirage_desktop.liveportrait.crop import limit_size
    from mirage_desktop.liveportrait.cropper import Cropper
    from mirage_desktop.liveportrait.options import FaceRatios
    from mirage_desktop.vision.scrfd import SCRFDDetector

    portrait = limit_size(cv2.imread(str(bundled_avatar())))
    face = SCRFDDetector(synthetic_models_dir / "scrfd" / "scrfd_2.5g_bnkps.onnx").detect(portrait)[0]
    want = Cropper.load(synthetic_models_dir, device="cpu").source(cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB), face.box)
    got = stage._avatar.crop
    assert np.array_equal(got.image_256, want.image_256) and np.array_equal(got.M_c2o, want.M_c2o)
    ratios = FaceRatios.from_landmarks(want.lmk203)  # the source's ratios: measured, not assumed
    np.testing.assert_allclose(stage._avatar.source.eye_ratio.cpu().numpy(), ratios.eyes, rtol=1e-6)
    np.testing.assert_allclose(stage._avatar.source.lip_ratio.cpu().numpy(), ratios.lip, rtol=1e-6)
    # the canvas pastes back with that crop's inverse, letterboxed
    layout = stage._avatar.paste.layout
    np.testing.assert_allclose(stage._avatar.paste.m_c2o, layout.matrix() @ want.M_c2o.astype(np.float64))


def test_eyes_and_lips_following_the_driver_animate(stage: AvatarStage) -> None:
    camera = DemoSource(640, 360, 30, paced=False)
    camera.open()
    try:
        stage.set_options(eyes="driver", lips="driver", normalize_lip=True, animation_region="exp")
        with pytest.raises(ValueError, match="eyes"):
            stage.set_options(eyes="closed")
        outs = []
        for i in (60, 75):
            image = camera.render(i)
            frame = stage.detector.process(Frame(image=image, index=i, t_capture=i / 30, camera=image))
            outs.append(stage.process(frame).image)
        assert stage.reason == "" and "crop_ms" in stage.stats()  # on a CPU every sub-timing is exact
        assert not np.array_equal(outs[0], stage._avatar.paste.rest)
    finally:
        stage.set_options(eyes="off", lips="off", normalize_lip=False, animation_region="all")


def test_missing_landmark_models_name_the_download(synthetic_models_dir: Path, tmp_path: Path) -> None:
    for sub in ("scrfd", "liveportrait/base_models", "liveportrait/retargeting_models"):
        (tmp_path / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / sub).symlink_to(synthetic_models_dir / sub)
    s = make_stage(tmp_path)
    assert s.ensure_ready(block=True) is False
    assert "landmark" in s.reason and "mirage-models download liveportrait" in s.reason
    assert s.detector.ready and s.detector.landmarks is None  # face detection itself still works, SCRFD alone


def _animate_one_frame(stage: AvatarStage) -> None:
    camera = DemoSource(640, 360, 30, paced=False)
    camera.open()
    image = camera.render(0)
    assert stage.detector.ensure_ready(block=True), stage.detector.reason
    frame = stage.detector.process(Frame(image=image, index=0, t_capture=0.0, camera=image))
    assert frame.face is not None
    stage.process(frame)


def test_a_missing_backend_is_the_reason_and_every_network_falls_back_to_pytorch(
    synthetic_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--backend onnxruntime where ORT has no such provider (DirectML on Linux: the real provider check): the video
    keeps going on PyTorch, the reason names the fix, stats and the engine's backends say what really runs."""
    monkeypatch.setenv("MIRAGE_ORT_DEVICE", "directml")
    stage = make_stage(synthetic_models_dir, liveportrait_backend="onnxruntime")
    assert stage.ensure_ready(block=True), stage.reason
    _animate_one_frame(stage)
    assert stage.timings["avatar_ms"] > 0  # it animated
    assert "onnxruntime-directml" in stage.reason and "running them in PyTorch" in stage.reason, stage.reason
    assert stage.status().state == "ready" and stage.status().model_group is None  # no download fixes it
    assert stage.stats()["backend"] == {m: "torch fp32" for m in ("F", "M", "W", "G", "stitching", "lip", "eye")}


def test_one_time_work_shows_as_the_loading_reason(synthetic_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage hands LivePortrait.load its progress callback; while the load runs, the status says so."""
    from mirage_desktop.stages.avatar import stage as stage_module

    real_load = stage_module.LivePortrait.load
    seen: list[tuple[str, str]] = []

    def load(*args, **kwargs):  # the real load, after one progress report as the export would make
        kwargs["progress"]("Preparing the G network for ONNX Runtime (one time)", 0.5)
        status = stage.status()
        seen.append((status.state, status.reason))
        assert kwargs["backend"] == "torch" and kwargs["precision"] == "fp32" and "half" not in kwargs
        return real_load(*args, **kwargs)

    monkeypatch.setattr(stage_module.LivePortrait, "load", load)
    stage = make_stage(synthetic_models_dir)
    assert stage.ensure_ready(block=True), stage.reason
    assert seen == [("loading", "optimising for this computer (one time)… preparing the G network for ONNX "
                                "Runtime, 50%")]
    assert stage.reason == "" and stage.stats()["backend"]["G"] == "torch fp32"


def test_the_face_tracker_runs_on_the_processing_thread_only(synthetic_models_dir: Path) -> None:
    """Face detection off, the avatar on: the face stage still tracks for the avatar, on the processing thread,
    and switching face detection on mid-run keeps every tracker call on that one thread (the avatar's worker
    never touches the tracker and its landmark buffers)."""
    import threading
    import time

    from mirage_desktop.engine.pipeline import Engine

    settings = Settings(models_dir=synthetic_models_dir, enable_scrfd=False, enable_liveportrait=True,
                        output_width=640, output_height=360, device="cpu", liveportrait_backend="torch",
                        liveportrait_precision="fp32")
    face = FaceDetectionStage(settings)
    avatar = AvatarStage(settings, face)
    assert face.ensure_ready(block=True) and avatar.ensure_ready(block=True), avatar.reason
    callers: list[str] = []
    tracker = face.tracker
    assert tracker is not None
    update = tracker.update

    def spy(image: np.ndarray, t: float):  # type: ignore[no-untyped-def]
        callers.append(threading.current_thread().name)
        return update(image, t)

    tracker.update = spy  # type: ignore[method-assign]
    engine = Engine(DemoSource(640, 360, 30), [face, avatar])
    engine.start()
    try:
        deadline = time.monotonic() + 60
        while engine.metrics.stage(avatar.name).count < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        animated_off = engine.metrics.stage(avatar.name).count
        calls_off = len(callers)
        face.set_enabled(True)
        deadline = time.monotonic() + 60
        while engine.metrics.stage(avatar.name).count < animated_off + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
    assert animated_off >= 2 and calls_off >= 2  # the avatar animated from the tracked face with detection off
    assert len(callers) > calls_off  # and the tracker went on after the switch
    assert set(callers) == {"mirage-process"}, set(callers)  # the engine's processing thread, by its name
