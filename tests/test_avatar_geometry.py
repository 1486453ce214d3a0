"""The avatar's canvas and paste-back against the official formulas (the geometry kit's paste-back, which the
conformance command checks array for array), on the real photo with the kit's stand-in landmark models."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mirage_desktop.liveportrait import crop as geo
from mirage_desktop.liveportrait.cropper import Cropper
from mirage_desktop.liveportrait.geometry_conformance import load_generator
from mirage_desktop.liveportrait.paste_back import paste_back_cv2, prepare_mask
from mirage_desktop.stages.avatar.canvas import AvatarCanvas, CanvasLayout
from mirage_desktop.vision.landmarks import Landmark106, Landmark203
from mirage_desktop.vision.scrfd import SCRFDDetector


@pytest.fixture(scope="module")
def portrait_crop(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    image = cv2.imread(str(shared_dir / "media" / "astronaut.png"))
    face = SCRFDDetector(shared_dir / "models" / "scrfd_2.5g.onnx").detect(image)[0]
    paths = load_generator(shared_dir / "liveportrait" / "geometry").write_models(
        str(tmp_path_factory.mktemp("lmk")), salt="")
    cropper = Cropper(Landmark106(Path(paths["2d106det.onnx"]), "cpu"), Landmark203(Path(paths["landmark.onnx"]), "cpu"))
    return image, cropper.source(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), face.box)


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)


def test_canvas_the_size_of_the_photo_is_the_official_paste_back(portrait_crop) -> None:
    image, crop = portrait_crop
    h, w = image.shape[:2]
    layout = CanvasLayout.letterbox(w, h, w, h, keep_aspect=False)
    assert (layout.scale, layout.offset_x, layout.offset_y) == (1.0, 0.0, 0.0)
    canvas = AvatarCanvas(image, crop.M_c2o, layout, "cpu")
    face_rgb = _face()
    # G's output in [0, 1] whose official parse_output (x 255, truncate) gives exactly face_rgb
    g = (torch.from_numpy(face_rgb).permute(2, 0, 1)[None].float() + 0.5) / 255
    got = canvas.compose(g)
    want = paste_back_cv2(face_rgb[..., ::-1].copy(), crop.M_c2o, image, prepare_mask(crop.M_c2o, w, h))
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # the kit's paste-back tolerance (OpenCV fixed point)
    # nothing outside the region the crop reaches changes
    x0, y0, x1, y1 = canvas.roi
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(got[outside], image[outside])
    mask = prepare_mask(crop.M_c2o, w, h)
    ys, xs = np.nonzero(mask)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1


def test_letterboxed_paste_lands_on_the_crop_square(portrait_crop) -> None:
    image, crop = portrait_crop
    layout = CanvasLayout.letterbox(image.shape[1], image.shape[0], 1280, 720, keep_aspect=False)
    canvas = AvatarCanvas(image, crop.M_c2o, layout, "cpu")
    assert canvas.rest.shape == (720, 1280, 3) and not canvas.rest.flags.writeable
    assert np.all(canvas.rest[:, :200] == 0)  # letterbox bars left and right
    out = canvas.compose(torch.ones(1, 3, 512, 512))  # a white face
    changed = np.any(out != canvas.rest, axis=2)
    # the official mask, warped onto the canvas by the crop's inverse composed with the letterbox
    mask = prepare_mask(canvas.m_c2o, 1280, 720)
    assert not np.any(changed & (mask == 0))  # only where the official mask reaches
    assert np.all(out[mask == 255] == 255)  # and fully white where it is full
    # the official square (the 2.3-scaled rectangle's centre, M_c2o of the crop centre) is on the canvas there
    m = crop.M_c2o.astype(np.float64)
    cx, cy = (m[:2, :2] @ [256, 256] + m[:2, 2]) * layout.scale + [layout.offset_x, layout.offset_y]
    assert mask[int(cy), int(cx)] == 255 and np.all(out[int(cy), int(cx)] == 255)
    x0 = canvas.roi[0]
    assert np.array_equal(out[:, :x0], canvas.rest[:, :x0])


def test_source_crop_is_the_official_square(portrait_crop) -> None:
    image, crop = portrait_crop
    rect = geo.parse_rect(crop.lmk106, scale=2.3, vy_ratio=-0.125)  # the official formula, from its 106 points
    m = crop.M_o2c.astype(np.float64)
    np.testing.assert_allclose(m[:2, :2] @ rect.center + m[:2, 2], [256, 256], atol=1e-2)
    assert 512 / float(np.hypot(*m[:2, 0])) == pytest.approx(float(rect.size[0]), rel=1e-5)
    assert crop.image_256.shape == (256, 256, 3)
    np.testing.assert_array_equal(crop.image_256, cv2.resize(crop.image_512, (256, 256), interpolation=cv2.INTER_AREA))


def test_keep_aspect_uses_the_portraits_own_shape() -> None:
    layout = CanvasLayout.letterbox(400, 600, 1280, 720, keep_aspect=True)
    assert (layout.width, layout.height) == (480, 720)
    assert layout.offset_x == pytest.approx(0) and layout.offset_y == pytest.approx(0)
