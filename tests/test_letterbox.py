"""The one fit-into-a-rectangle computation, against exact rational arithmetic."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from mirage_desktop.vision.letterbox import fit_inside

BOXES = [(640, 640), (640, 480), (1280, 720), (1920, 1080), (720, 1280), (2, 2)]


def _sizes() -> list[tuple[int, int]]:
    rng = random.Random(7)
    common = [(1920, 1080), (1280, 720), (640, 480), (512, 512), (400, 600), (1080, 1920), (1, 1), (3, 2000)]
    return common + [(rng.randint(1, 4000), rng.randint(1, 4000)) for _ in range(2000)]


@pytest.mark.parametrize("box", BOXES)
def test_fit_matches_exact_fractions(box: tuple[int, int]) -> None:
    bw, bh = box
    for w, h in _sizes():
        fit = fit_inside(w, h, bw, bh)
        exact = min(Fraction(bw, w), Fraction(bh, h))
        assert fit.scale == float(exact)
        assert fit.width == pytest.approx(float(w * exact), rel=1e-12)
        assert fit.height == pytest.approx(float(h * exact), rel=1e-12)
        assert fit.width == bw or fit.height == bh  # one side meets the box exactly
        assert fit.size_floor() == (max(1, math.floor(w * exact)), max(1, math.floor(h * exact)))
        nw, nh = fit.size_nearest()
        assert 1 <= nw <= bw and 1 <= nh <= bh
        assert abs(nw - w * exact) <= Fraction(1, 2) + Fraction(1, 10**9) or nw in (1, bw)
        assert abs(nh - h * exact) <= Fraction(1, 2) + Fraction(1, 10**9) or nh in (1, bh)
        ox, oy = fit.centred_offset()
        assert ox == pytest.approx(float((bw - w * exact) / 2), abs=1e-9)
        assert oy == pytest.approx(float((bh - h * exact) / 2), abs=1e-9)


def test_empty_source_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_inside(0, 10, 640, 640)
