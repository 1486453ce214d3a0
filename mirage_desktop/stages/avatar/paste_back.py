"""Puts the animated 512x512 face back into the whole portrait, on the device, at the output size.

Everything that depends only on the avatar (the letterboxed portrait, where the face square lands on the canvas,
the sampling grid from canvas pixels into the generator's output, the feathered mask) is computed once when the
avatar is prepared. Per frame this is one grid sample and one blend over the face's region of interest, then the
only host copy of the frame: that region, as uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mirage_desktop.stages.avatar.crop import FaceSquare, crop_matrix, feather_mask
from mirage_desktop.vision.letterbox import fit_inside

GENERATOR_SIZE = 512


@dataclass(frozen=True)
class CanvasLayout:
    """How the portrait sits on the output canvas: scale and offset of the portrait's pixel grid."""

    width: int
    height: int
    scale: float
    offset_x: float
    offset_y: float

    @staticmethod
    def letterbox(portrait_w: int, portrait_h: int, width: int, height: int, keep_aspect: bool) -> "CanvasLayout":
        """Fit the portrait inside width x height (bars where aspects differ); with ``keep_aspect`` the canvas takes
        the portrait's own aspect at the given height instead."""
        if keep_aspect:
            width = max(2, int(round(height * portrait_w / portrait_h / 2)) * 2)
        fit = fit_inside(portrait_w, portrait_h, width, height)
        return CanvasLayout(width, height, fit.scale, *fit.centred_offset())


class PasteBack:
    """Composes generator output into the letterboxed portrait. Built once per avatar; ``compose`` per frame."""

    def __init__(self, portrait_bgr: np.ndarray, square: FaceSquare, layout: CanvasLayout, device: torch.device,
                 border: float = 0.12) -> None:
        self.layout = layout
        self.device = device
        ph, pw = portrait_bgr.shape[:2]
        m = np.array([[layout.scale, 0, layout.offset_x], [0, layout.scale, layout.offset_y]], dtype=np.float64)
        canvas = cv2.warpAffine(portrait_bgr, m, (layout.width, layout.height), flags=cv2.INTER_AREA
                                if layout.scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        canvas.flags.writeable = False
        #: The avatar at rest: the letterboxed portrait (read-only, shared by every frame that shows it).
        self.rest = canvas

        corners = square.corners() * layout.scale + np.array([layout.offset_x, layout.offset_y])
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, layout.width), min(y1, layout.height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError("the face lies outside the output canvas")
        self.roi = (int(x0), int(y0), int(x1), int(y1))

        # canvas pixel -> portrait pixel -> generator-crop pixel -> grid_sample's [-1, 1] (align_corners=False)
        xs = (np.arange(x0, x1, dtype=np.float64) - layout.offset_x) / layout.scale
        ys = (np.arange(y0, y1, dtype=np.float64) - layout.offset_y) / layout.scale
        px, py = np.meshgrid(xs, ys)
        crop_m = crop_matrix(square, GENERATOR_SIZE)
        cx = crop_m[0, 0] * px + crop_m[0, 1] * py + crop_m[0, 2]
        cy = crop_m[1, 0] * px + crop_m[1, 1] * py + crop_m[1, 2]
        grid = np.stack([(cx + 0.5) / GENERATOR_SIZE * 2 - 1, (cy + 0.5) / GENERATOR_SIZE * 2 - 1], axis=-1)
        self._grid = torch.from_numpy(grid.astype(np.float32))[None].to(device)
        mask = torch.from_numpy(feather_mask(GENERATOR_SIZE, border))[None, None].to(device)
        self._mask = F.grid_sample(mask, self._grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        roi_rgb = np.ascontiguousarray(canvas[y0:y1, x0:x1, ::-1])
        self._background = torch.from_numpy(roi_rgb).to(device).permute(2, 0, 1)[None].float().div_(255.0)

    @property
    def mask(self) -> torch.Tensor:
        """The feathered mask over the region of interest, (1, 1, h, w) in [0, 1]."""
        return self._mask

    def compose_roi(self, generated: torch.Tensor) -> torch.Tensor:
        """Blend a (1, 3, 512, 512) RGB [0, 1] generator output into the ROI: (h, w, 3) BGR uint8, on the device."""
        warped = F.grid_sample(generated.to(self._background.dtype), self._grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        blended = torch.lerp(self._background, warped, self._mask)
        return blended[0].flip(0).permute(1, 2, 0).mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)

    def compose(self, generated: torch.Tensor) -> np.ndarray:
        """The full output frame: the portrait with the animated face pasted back (a new host array)."""
        roi = self.compose_roi(generated).cpu().numpy()
        x0, y0, x1, y1 = self.roi
        out = self.rest.copy()
        out[y0:y1, x0:x1] = roi
        return out
