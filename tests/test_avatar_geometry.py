"""Face framing from SCRFD keypoints and the paste-back, on the real photo and the real detector."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mirage_desktop.stages.avatar.crop import (
    DRIVING_FRAMING, SOURCE_FRAMING, crop_matrix, cut_crop, face_square, feather_mask,
)
from mirage_desktop.vision.scrfd import SCRFDDetector
from mirage_desktop.stages.avatar.paste_back import CanvasLayout, PasteBack


@pytest.fixture(scope="module")
def portrait_and_face(shared_dir: Path):
    image = cv2.imread(str(shared_dir / "media" / "astronaut.png"))
    face = SCRFDDetector(shared_dir / "models" / "scrfd_2.5g.onnx").detect(image)[0]
    return image, face


def test_source_framing_reproduces_the_kits_crop_of_the_photo(portrait_and_face) -> None:
    # the conformance kit's source crop of this photo: square centred at (226, 122), side 236 px
    _, face = portrait_and_face
    square = face_square(face.kps, SOURCE_FRAMING)
    assert np.hypot(*(square.center - [226, 122])) < 2.0
    assert square.side == pytest.approx(236, rel=0.02)
    driving = face_square(face.kps, DRIVING_FRAMING)
    assert driving.side < square.side  # the driving crop is tighter (scale 2.2 vs 2.3)


def test_crop_matrix_maps_the_square_corners_to_the_crop_corners(portrait_and_face) -> None:
    _, face = portrait_and_face
    square = face_square(face.kps, SOURCE_FRAMING)
    m = crop_matrix(square, 256)
    mapped = (m[:, :2] @ square.corners().T).T + m[:, 2]
    np.testing.assert_allclose(mapped, [[0, 0], [256, 0], [256, 256], [0, 256]], atol=1e-6)


def test_feather_mask_is_one_inside_and_fades_to_zero_at_the_edge() -> None:
    mask = feather_mask(512)
    assert mask[256, 256] == pytest.approx(1.0)
    assert mask[0, 256] < 0.01 and mask[256, 0] < 0.01
    assert np.all(np.diff(mask[256, :256]) >= 0)


def test_pasting_back_the_unchanged_face_leaves_the_portrait_unchanged(portrait_and_face) -> None:
    portrait, face = portrait_and_face
    square = face_square(face.kps, SOURCE_FRAMING)
    layout = CanvasLayout.letterbox(512, 512, 1280, 720, keep_aspect=False)
    paste = PasteBack(portrait, square, layout, torch.device("cpu"))
    assert paste.rest.shape == (720, 1280, 3)
    assert np.all(paste.rest[:, :200] == 0)  # letterbox bars left and right
    crop = cut_crop(cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB), square, 512)
    gen = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    out = paste.compose(gen)
    diff = np.abs(out.astype(int) - paste.rest.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99.9) <= 12


def test_pasted_region_sits_on_the_face_and_nothing_else_changes(portrait_and_face) -> None:
    portrait, face = portrait_and_face
    square = face_square(face.kps, SOURCE_FRAMING)
    layout = CanvasLayout.letterbox(512, 512, 1280, 720, keep_aspect=False)
    paste = PasteBack(portrait, square, layout, torch.device("cpu"))
    out = paste.compose(torch.ones(1, 3, 512, 512))  # a white face
    changed = np.any(out != paste.rest, axis=2)
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = paste.roi
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    # the changed region is centred on the detected face, mapped onto the canvas
    face_center = (face.box[:2] + face.box[2:]) / 2 * layout.scale + [layout.offset_x, layout.offset_y]
    assert np.hypot(xs.mean() - face_center[0], ys.mean() - face_center[1]) < 0.1 * square.side * layout.scale
    # fully white at the face centre, untouched far away
    cx, cy = int(square.center[0] * layout.scale + layout.offset_x), int(square.center[1] * layout.scale)
    assert np.all(out[cy, cx] == 255)
    assert np.array_equal(out[:, :x0], paste.rest[:, :x0])


def test_keep_aspect_uses_the_portraits_own_shape() -> None:
    layout = CanvasLayout.letterbox(400, 600, 1280, 720, keep_aspect=True)
    assert (layout.width, layout.height) == (480, 720)
    assert layout.offset_x == pytest.approx(0) and layout.offset_y == pytest.approx(0)
