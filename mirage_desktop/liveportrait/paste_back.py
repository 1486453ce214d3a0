"""Paste-back of the generated 512x512 face into the original photo, with the official mask geometry.

Officially (``prepare_paste_back`` / ``paste_back`` in ``src/utils/crop.py``) a 512x512 mask template is warped
into the photo with the source crop's M_c2o, the face is warped the same way, and
``result = trunc(clip(mask * face + (1 - mask) * photo))``. The template is 255 inside and ramps linearly to 0 over
16 px at each edge with quarter-circle corners; :func:`mask_template` generates it from that rule (the kit checks
all 262,144 pixels), so no image file ships with the app.

:class:`PasteBack` is the device path (torch): the sampling grid, the warped mask and the static part of the blend
depend only on the photo and M_c2o, so they are made once per source; per frame it is one grid sample and one
fused blend over the region the crop covers (:attr:`PasteBack.roi`: outside it the mask is exactly 0, so the photo
stays as it is and the live stage copies only that region to the host). The warped mask and face are rounded to uint8 levels before the blend, as the official uint8 warps are;
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


def crop_roi(m_c2o: np.ndarray, width: int, height: int, src: int = TEMPLATE_SIZE) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the photo pixels a bilinear warp of the ``src`` crop can reach (crop coordinates inside
    (-1, src)), clipped to the photo; empty (x0 == x1) when the crop misses the photo."""
    m = np.asarray(m_c2o, np.float64).reshape(3, 3)
    corners = np.array([[-1, -1], [src, -1], [src, src], [-1, src]], np.float64)
    mapped = corners @ m[:2, :2].T + m[:2, 2]
    x0, y0 = np.floor(mapped.min(axis=0)).astype(int)
    x1, y1 = np.ceil(mapped.max(axis=0)).astype(int) + 1
    x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
    y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
    return int(x0), int(y0), int(max(x1, x0)), int(max(y1, y0))


def _grid(m_c2o: np.ndarray, roi: tuple[int, int, int, int], src: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=True) of every ROI pixel in the crop: M_o2c applied in float64."""
    m = np.linalg.inv(np.asarray(m_c2o, np.float64).reshape(3, 3))
    x0, y0, x1, y1 = roi
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
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
        #: (x0, y0, x1, y1): where the face lands; the blend runs only there
        self.roi = crop_roi(m_c2o, self.width, self.height, size)
        x0, y0, x1, y1 = self.roi
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError("the face crop lies outside the photo: nothing to paste back")
        self.grid = _grid(m_c2o, self.roi, size).to(self.device)
        template = torch.from_numpy(mask_template(size).astype(np.float32))[None, None].to(self.device)
        #: the warped template over the ROI, uint8 levels as float (1, 1, h, w): the official mask_ori x 255
        self.mask_roi = self._sample(template)
        self.mask = self.mask_roi / 255.0
        photo = torch.from_numpy(np.ascontiguousarray(photo_rgb)).to(self.device).permute(2, 0, 1)[None].float()
        self.photo = photo
        self._static = (1 - self.mask) * photo[:, :, y0:y1, x0:x1]  # the photo's share of the blend, per source

    def _sample(self, image: torch.Tensor) -> torch.Tensor:
        """Bilinear, zero outside, rounded to uint8 levels (what cv2.warpAffine returns for uint8 input)."""
        out = F.grid_sample(image, self.grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.round_().clamp_(0, 255)

    def _full(self, roi: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = self.roi
        out = background.clone()
        out[:, :, y0:y1, x0:x1] = roi
        return out

    @property
    def mask_levels(self) -> torch.Tensor:
        """The warped template over the whole photo (1, 1, H, W), uint8 levels as float (the official mask_ori)."""
        return self._full(self.mask_roi, torch.zeros_like(self.photo[:, :1]))

    def warp_face(self, face: torch.Tensor) -> torch.Tensor:
        """(1, 3, 512, 512) face in 0..255 -> (1, 3, H, W) uint8 levels in the photo's frame."""
        return self._full(self._sample(face.to(self.device, torch.float32)), torch.zeros_like(self.photo))

    def compose_roi(self, face: torch.Tensor) -> torch.Tensor:
        """(1, 3, 512, 512) face in 0..255 (float or uint8) -> the ROI of the result, (h, w, 3) uint8 on the device
        (channels in the photo's order: give a BGR face with a BGR photo)."""
        blended = torch.addcmul(self._static, self.mask, self._sample(face.to(self.device, torch.float32)))
        return blended.clamp_(0, 255)[0].permute(1, 2, 0).to(torch.uint8)

    def compose(self, face: torch.Tensor) -> torch.Tensor:
        """(1, 3, 512, 512) RGB face in 0..255 (float or uint8) -> (H, W, 3) uint8 RGB on the device."""
        x0, y0, x1, y1 = self.roi
        out = self.photo[0].permute(1, 2, 0).to(torch.uint8)  # a new tensor
        out[y0:y1, x0:x1] = self.compose_roi(face)
        return out
