"""Fitting a picture into a rectangle with its aspect ratio kept: the one computation behind every letterbox.

SCRFD's input (content top-left, padding after), the avatar's portrait on the output canvas and frames of another
size on the virtual camera all scale a source uniformly until one side meets the box. The limiting side is chosen
by an exact integer comparison, and the other side is ``box side * source other / source side``, so a 16:9 frame
in a 16:9 box lands exactly on the box with no float off-by-one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fit:
    """Where a ``src_w`` x ``src_h`` picture lands when scaled uniformly to fit inside ``box_w`` x ``box_h``."""

    src_w: int
    src_h: int
    box_w: int
    box_h: int
    #: box / source along the limiting side (equal to ``min(box_w / src_w, box_h / src_h)``).
    scale: float
    #: The scaled size, unrounded; one of the two equals the box's side exactly.
    width: float
    height: float

    def size_floor(self) -> tuple[int, int]:
        """(width, height) in whole pixels, rounded down and at least 1: InsightFace's rule for SCRFD's input."""
        return max(1, int(self.width)), max(1, int(self.height))

    def size_nearest(self) -> tuple[int, int]:
        """(width, height) in whole pixels, rounded to nearest, at least 1 and never past the box."""
        w, h = round(self.src_w * self.scale), round(self.src_h * self.scale)
        return min(self.box_w, max(1, w)), min(self.box_h, max(1, h))

    def centred_offset(self) -> tuple[float, float]:
        """(x, y) of the scaled picture's top-left corner when centred in the box (bars split evenly)."""
        return (self.box_w - self.src_w * self.scale) / 2, (self.box_h - self.src_h * self.scale) / 2


def fit_inside(src_w: int, src_h: int, box_w: int, box_h: int) -> Fit:
    """The largest uniform scaling of ``src_w`` x ``src_h`` that fits inside ``box_w`` x ``box_h``."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"cannot fit a {src_w}x{src_h} picture: both sides must be positive")
    if src_h * box_w > src_w * box_h:  # relatively taller than the box: the height limits
        return Fit(src_w, src_h, box_w, box_h, box_h / src_h, box_h * src_w / src_h, float(box_h))
    return Fit(src_w, src_h, box_w, box_h, box_w / src_w, float(box_w), box_w * src_h / src_w)
