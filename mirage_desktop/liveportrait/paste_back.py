"""Paste-back of the generated 512x512 face into the original photo, with the official mask geometry.

Officially (``prepare_paste_back`` / ``paste_back`` in ``src/utils/crop.py``) a 512x512 mask template is warped
into the photo with the source crop's M_c2o, the face is warped the same way, and
``result = trunc(clip(mask * face + (1 - mask) * photo))``. The template is 255 inside and ramps linearly to 0 over
16 px at each edge with quarter-circle corners; :func:`mask_template` generates it from that rule (the kit checks
all 262,144 pixels), so no image file ships with the app.

:class:`PasteBack` is the device path (torch): the sampling grid, the warped mask and the static part of the blend
depend only on the photo and M_c2o, so they are made once per source; per frame it is one grid sample and one
fused blend. The warped mask and face are rounded to uint8 levels before the blend, as the official uint8 warps are;
exact bilinear sampling differs from OpenCV's 1/32-px fixed point by one level on a few pixels in a million.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mirage_desktop.liveportrait.crop import warp

TEMPLATE_SIZE = 512
RAMP = 16


def mask_template(size: int = TEMPLATE_SIZE, ramp: int = RAMP) -> np.ndarray:
    """(size, size) uint8: 255 inside, a ``ramp``-px linear fall-off at the edges, rounded corners of radius ramp.

    dx = min(x, size - x) (so column 0 is 0 and the last column 1), likewise dy; r = |(max(0, ramp - dx),
    max(0, ramp - dy))|; value = floor(255 * clip(ramp - r, 0, ramp) / ramp)."""
    i = np.arange(size, dtype=np.float64)
    d = np.minimum(i, size - i)
    ex = np.maximum(0.0, ramp - d)
    r = np.sqrt(ex[None, :] ** 2 + ex[:, None] ** 2)
    return np.floor(255.0 * np.clip(ramp - r, 0.0, ramp) / ramp).astype(np.uint8)


def prepare_mask(m_c2o: np.ndarray, width: int, height: int, template: np.ndarray | None = None) -> np.ndarray:
    """The template warped into the photo (uint8, one channel; the official reads 3 equal channels)."""
    return warp(mask_template() if template is None else template, m_c2o, width, height)


def paste_back_cv2(face: np.ndarray, m_c2o: np.ndarray, photo: np.ndarray, mask_u8: np.ndarray) -> np.ndarray:
    """The official blend on the host (cv2 warps): a reference for :class:`PasteBack`."""
    h, w = photo.shape[:2]
    warped = warp(face, m_c2o, w, h)
    mask = (mask_u8.astype(np.float32) / 255.0)[..., None]
    return np.clip(mask * warped + (1 - mask) * photo, 0, 255).astype(np.uint8)


def _grid(m_c2o: np.ndarray, width: int, height: int, src: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=True) of every photo pixel in the crop: M_o2c applied in float64."""
    m = np.linalg.inv(np.asarray(m_c2o, np.float64).reshape(3, 3))
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    cx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    cy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    g = np.stack([cx / (src - 1) * 2 - 1, cy / (src - 1) * 2 - 1], axis=-1)
    return torch.from_numpy(g.astype(np.float32))[None]


class PasteBack:
    """The official paste-back on a torch device, prepared once per source photo and crop."""

    def __init__(self, photo_rgb: np.ndarray, m_c2o: np.ndarray, device: torch.device | str = "cpu",
                 size: int = TEMPLATE_SIZE) -> None:
        self.device = torch.device(device)
        self.height, self.width = photo_rgb.shape[:2]
        self.size = size
        self.grid = _grid(m_c2o, self.width, self.height, size).to(self.device)
        template = torch.from_numpy(mask_template(size).astype(np.float32))[None, None].to(self.device)
        #: the warped template, uint8 levels as float (1, 1, H, W): the official mask_ori x 255
        self.mask_levels = self._sample(template)
        self.mask = self.mask_levels / 255.0
        photo = torch.from_numpy(np.ascontiguousarray(photo_rgb)).to(self.device).permute(2, 0, 1)[None].float()
        self.photo = photo
        self._static = (1 - self.mask) * photo  # the photo's share of the blend, fixed per source

    def _sample(self, image: torch.Tensor) -> torch.Tensor:
        """Bilinear, zero outside, rounded to uint8 levels (what cv2.warpAffine returns for uint8 input)."""
        out = F.grid_sample(image, self.grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.round_().clamp_(0, 255)

    def warp_face(self, face: torch.Tensor) -> torch.Tensor:
        """(1, 3, 512, 512) face in 0..255 -> (1, 3, H, W) uint8 levels in the photo's frame."""
        return self._sample(face.to(self.device, torch.float32))

    def compose(self, face: torch.Tensor) -> torch.Tensor:
        """(1, 3, 512, 512) RGB face in 0..255 (float or uint8) -> (H, W, 3) uint8 RGB on the device."""
        blended = torch.addcmul(self._static, self.mask, self.warp_face(face))
        return blended.clamp_(0, 255)[0].permute(1, 2, 0).to(torch.uint8)
