"""The avatar's output canvas: the portrait letterboxed to the output size, and the official paste-back into it.

The official pipeline pastes the 512x512 face into the source photo with the source crop's inverse matrix and its
feathered mask (:class:`~mirage_desktop.liveportrait.paste_back.PasteBack`). Here the photo is the letterboxed
canvas, so the inverse crop is composed with the letterbox (canvas = L x photo): one warp per frame, at the output
size, with no extra resize. With a canvas the size of the photo (L the identity) it is the official paste-back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mirage_desktop.liveportrait.paste_back import PasteBack


@dataclass(frozen=True)
class CanvasLayout:
    """How the portrait sits on the output canvas: scale and offset of the portrait's pixel grid."""

    width: int
    height: int
    scale: float
    offset_x: float
    offset_y: float

    @staticmethod
    def letterbox(portrait_w: int, portrait_h: int, width: int, height: int, keep_aspect: bool) -> CanvasLayout:
        """Fit the portrait inside width x height (bars where aspects differ); with ``keep_aspect`` the canvas takes
        the portrait's own aspect at the given height instead."""
        if keep_aspect:
            width = max(2, int(round(height * portrait_w / portrait_h / 2)) * 2)
        scale = min(width / portrait_w, height / portrait_h)
        return CanvasLayout(width, height, scale, (width - portrait_w * scale) / 2, (height - portrait_h * scale) / 2)

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 portrait pixel -> canvas pixel."""
        return np.array([[self.scale, 0, self.offset_x], [0, self.scale, self.offset_y], [0, 0, 1]], np.float64)


class AvatarCanvas:
    """Built once per avatar; :meth:`compose` per frame (one grid sample and blend over the face's region, then
    the only host copy of the frame: that region)."""

    def __init__(self, portrait_bgr: np.ndarray, m_c2o: np.ndarray, layout: CanvasLayout,
                 device: torch.device | str) -> None:
        self.layout = layout
        m = layout.matrix()
        flags = cv2.INTER_AREA if layout.scale < 1 else cv2.INTER_LINEAR
        canvas = cv2.warpAffine(portrait_bgr, m[:2], (layout.width, layout.height), flags=flags,
                                borderMode=cv2.BORDER_CONSTANT)
        #: crop (512 px) -> canvas pixels
        self.m_c2o = m @ np.asarray(m_c2o, np.float64).reshape(3, 3)
        self.paste = PasteBack(canvas, self.m_c2o, device)  # BGR canvas: the face goes in as BGR too
        canvas.flags.writeable = False
        #: The avatar at rest: the letterboxed portrait (read-only, shared by every frame that shows it).
        self.rest = canvas
        self.roi = self.paste.roi

    @staticmethod
    def face_levels(face: torch.Tensor) -> torch.Tensor:
        """G's (1, 3, 512, 512) RGB output in [0, 1] -> BGR uint8 levels as float: the official parse_output
        (clip, x 255, truncate)."""
        return face.float().clamp(0, 1).mul_(255).floor_().flip(1)

    def compose(self, face: torch.Tensor) -> np.ndarray:
        """The output frame (a new host BGR array): the canvas with the animated face pasted back."""
        roi = self.paste.compose_roi(self.face_levels(face)).cpu().numpy()
        x0, y0, x1, y1 = self.roi
        out = self.rest.copy()
        out[y0:y1, x0:x1] = roi
        return out
