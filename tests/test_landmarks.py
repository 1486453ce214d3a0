"""The landmark models on ONNX Runtime (the kit's stand-ins), their errors, and their registry entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mirage_desktop.liveportrait import geometry_conformance
from mirage_desktop.liveportrait.cropper import Cropper, track
from mirage_desktop.models.registry import INSIGHTFACE_LICENCE, REGISTRY, entries_for, landmark_paths
from mirage_desktop.vision.landmarks import Landmark106, Landmark203, LandmarkModelError

GEOMETRY = Path(__file__).resolve().parents[1].parent / "shared" / "liveportrait" / "geometry"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (GEOMETRY / "synth_landmark_models.py").is_file():
        pytest.skip(f"the geometry kit is not at {GEOMETRY}")
    out = tmp_path_factory.mktemp("stand_ins")
    gen = geometry_conformance.load_generator(GEOMETRY)
    paths = gen.write_models(str(out), salt="")
    want = gen.expected_digests("")
    assert {n: gen.sha256_file(p) for n, p in paths.items()} == want  # the stand-ins the golden was made with
    return out


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GEOMETRY / "landmarks.npz") as d:
        return {k: d[k] for k in d.files}


def test_106_points_from_a_box_match_insightface(stand_ins: Path, golden: dict[str, np.ndarray]) -> None:
    model = Landmark106(stand_ins / "2d106det.onnx", device="cpu")
    rgb = golden["image"]
    for box, want in zip(golden["det_boxes"], golden["det_lmk106"]):
        got_bgr = model.detect(np.ascontiguousarray(rgb[..., ::-1]), box)
        got_rgb = model.detect(rgb, box, bgr=False)  # the same blob either way
        assert np.abs(got_bgr - want).max() < 1e-3
        assert np.array_equal(got_bgr, got_rgb)


def test_203_points_track_from_previous_landmarks(stand_ins: Path, golden: dict[str, np.ndarray]) -> None:
    model = Landmark203(stand_ins / "landmark.onnx", device="cpu")
    step = track(model, golden["image"], golden["lmr_lmk_in_2"])  # 203 points in: the tracking case
    assert step.points.shape == (203, 2) and step.points.dtype == np.float32
    assert np.abs(step.points - golden["lmr_lmk203"][2]).max() < 5e-3


def test_missing_file_names_the_download(tmp_path: Path) -> None:
    with pytest.raises(LandmarkModelError, match="mirage-models download liveportrait"):
        Landmark106(tmp_path / "2d106det.onnx")
    with pytest.raises(LandmarkModelError, match="buffalo_l/2d106det.onnx"):
        Cropper.load(tmp_path)  # the official tree's path is named


def test_broken_file_names_the_download(tmp_path: Path) -> None:
    bad = tmp_path / "landmark.onnx"
    bad.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(LandmarkModelError, match="cannot be loaded.*mirage-models download liveportrait"):
        Landmark203(bad)


def test_one_model_in_place_of_the_other_is_refused(stand_ins: Path) -> None:
    with pytest.raises(LandmarkModelError, match="2d106det"):
        Landmark106(stand_ins / "landmark.onnx")
    with pytest.raises(LandmarkModelError, match="landmark.onnx"):
        Landmark203(stand_ins / "2d106det.onnx")


def test_registry_pins_both_under_their_official_paths() -> None:
    paths = landmark_paths(Path("/pretrained_weights"))
    assert paths == {
        "2d106det.onnx": Path("/pretrained_weights/insightface/models/buffalo_l/2d106det.onnx"),
        "landmark.onnx": Path("/pretrained_weights/liveportrait/landmark.onnx"),
    }
    group = {e.local_path: e for e in entries_for("liveportrait")}
    every = {e.local_path for e in entries_for("all")}
    for local in ("insightface/models/buffalo_l/2d106det.onnx", "liveportrait/landmark.onnx"):
        e = group[local]
        assert local in every and e in REGISTRY
        assert e.verified and len(e.revision) == 40 and e.remote_path == local
    assert group["insightface/models/buffalo_l/2d106det.onnx"].licence == INSIGHTFACE_LICENCE
    assert group["liveportrait/landmark.onnx"].size == 114_666_491
