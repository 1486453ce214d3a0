"""The live driving crop: roll and expressions leave it alone, sustained moves and distance changes are followed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mirage_desktop.liveportrait.cropper import live_lines
from mirage_desktop.liveportrait.live_crop import LiveCropper, measure

GEN = Path(__file__).resolve().parents[1].parent / "shared" / "liveportrait" / "geometry" / "synth_landmark_models.py"


@pytest.fixture(scope="module")
def gen():  # noqa: ANN201 - the kit's generator module (its canonical face layouts)
    if not GEN.is_file():
        pytest.skip(f"{GEN} missing")
    spec = importlib.util.spec_from_file_location("kit_synth_landmarks", GEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pose(canon: np.ndarray, center=(320.0, 240.0), scale=100.0, roll_deg=0.0) -> np.ndarray:
    a = np.deg2rad(roll_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (canon @ r.T * scale + np.asarray(center)).astype(np.float32)


def face(gen, mouth: float = 0.0, smile: float = 0.0, n: int = 106) -> np.ndarray:  # noqa: ANN001
    """A canonical face whose jaw drops with the mouth (the chin and lower contour move down with it)."""
    if n == 203:
        p = gen.canonical203(mouth_open=mouth, smile=smile)
        contour = slice(108, 141)
        p[contour, 1] += 0.6 * mouth * np.clip(p[contour, 1] - 0.3, 0, None) / 0.85
        return p
    p = gen.canonical106(mouth_open=mouth, smile=smile)
    low = p[:33, 1] > 0.3
    p[:33, 1][low] += 0.6 * mouth * (p[:33, 1][low] - 0.3) / 0.85
    return p


def run(cropper: LiveCropper, frames: list[np.ndarray]) -> list:
    return [cropper.update(f) for f in frames]


def inside(c, pts: np.ndarray) -> bool:  # noqa: ANN001
    q = pts @ c.M[:, :2].T + c.M[:, 2]
    return bool((q >= 0).all() and (q <= 512).all())


@pytest.mark.parametrize("n", [106, 203])
def test_roll_20_degrees_keeps_angle_and_side(gen, n: int) -> None:  # noqa: ANN001
    frames = [pose(face(gen, n=n), roll_deg=r) for r in np.linspace(0, 20, 21)] + [pose(face(gen, n=n), roll_deg=20)] * 30
    crops = run(LiveCropper(), frames)
    assert all(c.angle_deg == 0.0 for c in crops)
    sides = np.array([c.side for c in crops])
    assert np.abs(sides / sides[0] - 1).max() < 0.03
    # the measure is taken in the face's own frame: the rolled face measures what the upright one does
    assert abs(measure(frames[-1]).side / measure(frames[0]).side - 1) < 0.01


@pytest.mark.parametrize(("mouth", "smile"), [(0.35, 0.0), (0.0, 1.0), (0.3, 0.8)])
def test_open_mouth_and_smile_hold_the_side(gen, mouth: float, smile: float) -> None:  # noqa: ANN001
    frames = [pose(face(gen))] * 5 + [pose(face(gen, mouth * t, smile * t)) for t in np.linspace(0, 1, 10)]
    frames += [pose(face(gen, mouth, smile))] * 60  # held for two seconds
    crops = run(LiveCropper(), frames)
    sides = np.array([c.side for c in crops])
    assert np.abs(sides / sides[0] - 1).max() < 0.03
    centers = np.array([c.center for c in crops])
    assert np.abs(centers - centers[0]).max() / sides[0] < 0.03


def test_sustained_move_is_followed_and_the_face_never_leaves(gen) -> None:  # noqa: ANN001
    path = [(320 + 4 * i, 240 + 1.5 * i) for i in range(60)] + [(556, 328.5)] * 60
    frames = [pose(face(gen), center=c) for c in path]
    crops = run(LiveCropper(), frames)
    assert all(inside(c, f) for c, f in zip(crops, frames))
    target = LiveCropper()
    target.update(frames[-1])
    end = crops[-1]
    assert np.hypot(*(end.center - target.update(frames[-1]).center)) / end.side < 0.06
    small = run(LiveCropper(), [pose(face(gen), center=(320 + 0.5 * i, 240)) for i in range(20)])
    assert np.allclose(small[-1].center, small[0].center)  # a small shift stays in the picture as motion


@pytest.mark.parametrize("zoom", [1.3, 1 / 1.3])
def test_a_30_percent_distance_change_is_followed_smoothly(gen, zoom: float) -> None:  # noqa: ANN001
    scales = list(np.linspace(100, 100 * zoom, 30)) + [100 * zoom] * 60
    frames = [pose(face(gen), scale=s) for s in scales]
    crops = run(LiveCropper(), frames)
    sides = np.array([c.side for c in crops])
    assert abs(sides[-1] / (sides[0] * zoom) - 1) < 0.04
    assert np.abs(np.diff(sides) / sides[:-1]).max() < 0.06  # no jumps
    assert all(inside(c, f) for c, f in zip(crops, frames))


def test_cli_prints_one_json_line_per_frame(gen, tmp_path: Path) -> None:  # noqa: ANN001
    seq = np.stack([pose(face(gen, n=203), roll_deg=r) for r in range(0, 20, 5)])
    path = tmp_path / "seq.npy"
    np.save(path, seq)
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "mirage_desktop.liveportrait.cropper", "--live", "--landmarks", str(path), "--json"],
        capture_output=True, text=True, check=True, cwd=repo, env={"PYTHONPATH": str(repo), "PATH": ""},
    ).stdout.splitlines()
    lines = [json.loads(line) for line in out]
    assert [d["frame"] for d in lines] == list(range(4))
    assert lines == json.loads(json.dumps(live_lines(seq)))
    for d in lines:
        m = np.array(d["M"])
        assert m.shape == (2, 3) and d["angle_deg"] == 0.0
        centre_in_crop = m[:, :2] @ np.array(d["center"]) + m[:, 2]
        assert np.allclose(centre_in_crop, 256) and np.isclose(m[0, 0] * d["side"], 512)
