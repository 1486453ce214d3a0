"""The driving-motion smoother: a One-Euro filter that follows steps and sustained moves and removes jitter.

The oracle is the One-Euro recurrence of Casiez et al. (CHI 2012) written out below in plain Python floats, and the
lag bounds that follow from it: every smoothing factor is at least a_min = te / (te + 1 / (2 pi min_cutoff)), so
after a step the error shrinks at least by (1 - a_min) per frame, and the steady lag on a ramp is at most
1 / (2 pi min_cutoff) seconds (40 ms at 4 Hz).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mirage_desktop.liveportrait.motion import KpInfo, rotation_matrix
from mirage_desktop.liveportrait.smoothing import MotionSmoother, OneEuroFilter, OneEuroParams

RATE = 30.0
TE = 1.0 / RATE


def reference_one_euro(xs: list[float], ts: list[float], min_cutoff: float, beta: float, d_cutoff: float) -> list[float]:
    """The paper's recurrence, by hand: alpha(fc) = 1 / (1 + 1 / (2 pi fc te)); speed filtered at d_cutoff."""

    def alpha(fc: float, te: float) -> float:
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * fc * te))

    out = [xs[0]]
    x_prev, y_prev, dx_prev = xs[0], xs[0], 0.0
    for x, t, t_prev in zip(xs[1:], ts[1:], ts[:-1]):
        te = t - t_prev
        dx = (x - x_prev) / te
        ad = alpha(d_cutoff, te)
        edx = ad * dx + (1 - ad) * dx_prev
        a = alpha(min_cutoff + beta * abs(edx), te)
        y = a * x + (1 - a) * y_prev
        out.append(y)
        x_prev, y_prev, dx_prev = x, y, edx
    return out


def run(f: OneEuroFilter, xs: list[float], ts: list[float] | None = None) -> list[float]:
    ts = ts or [i * TE for i in range(len(xs))]
    return [float(f(torch.tensor([x], dtype=torch.float64), t)) for x, t in zip(xs, ts)]


def test_matches_the_hand_computed_recurrence_with_irregular_timestamps() -> None:
    xs = [0.0, 0.1, -0.05, 0.9, 1.0, 1.1, 0.95, 1.0, 2.0, 2.0]
    ts = [0.0, 0.03, 0.07, 0.1, 0.15, 0.16, 0.2, 0.24, 0.27, 0.31]
    params = OneEuroParams(min_cutoff=2.0, beta=0.5, d_cutoff=1.5)
    ours = run(OneEuroFilter(params, RATE), xs, ts)
    assert ours == pytest.approx(reference_one_euro(xs, ts, 2.0, 0.5, 1.5), abs=1e-12)
    # without timestamps the samples are 1 / rate apart
    even = [i * TE for i in range(len(xs))]
    assert run(OneEuroFilter(params, RATE), xs) == pytest.approx(reference_one_euro(xs, even, 2.0, 0.5, 1.5), abs=1e-12)


def test_a_step_is_followed_within_the_stated_bound_and_never_overshot() -> None:
    params = OneEuroParams()  # FasterLivePortrait's: 4 Hz, beta 0.3, 1 Hz
    xs = [0.0] * 5 + [1.0] * 15
    ys = run(OneEuroFilter(params, RATE), xs)
    a_min = TE / (TE + 1.0 / (2 * math.pi * params.min_cutoff))
    assert ys == pytest.approx(reference_one_euro(xs, [i * TE for i in range(20)], 4.0, 0.3, 1.0), abs=1e-12)
    for k, y in enumerate(ys[5:], start=1):
        assert 0.0 <= y <= 1.0  # no overshoot
        assert 1.0 - y <= (1 - a_min) ** k + 1e-12, (k, y)
    assert 1.0 - ys[5 + 3] < 0.06  # 4 frames (133 ms at 30 fps) after the step: within 6 %
    assert 1.0 - ys[5 + 6] < 0.01  # 7 frames (233 ms): within 1 %


def test_a_sustained_move_lags_at_most_one_over_two_pi_min_cutoff() -> None:
    params = OneEuroParams()
    speed = 30.0  # e.g. degrees per second
    xs = [speed * i * TE for i in range(60)]
    ys = run(OneEuroFilter(params, RATE), xs)
    bound_s = 1.0 / (2 * math.pi * params.min_cutoff)  # 39.8 ms
    for x, y in zip(xs[20:], ys[20:]):
        lag_s = (x - y) / speed
        assert 0.0 <= lag_s <= bound_s + 1e-9, lag_s
    assert (xs[-1] - ys[-1]) / speed < 0.015  # the speed raises the cutoff: 12 ms here, not 40


def test_jitter_on_a_still_face_is_reduced() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.003, 300)  # expression-sized jitter around a still value
    xs = (0.05 + noise).tolist()
    ys = run(OneEuroFilter(OneEuroParams(), RATE), xs)
    assert ys == pytest.approx(reference_one_euro(xs, [i * TE for i in range(300)], 4.0, 0.3, 1.0), abs=1e-12)
    # at the minimum cutoff the output variance is a / (2 - a) of the input's: std x 0.54 at 4 Hz, 30 fps
    assert np.std(ys[10:]) < 0.6 * np.std(xs[10:])
    assert np.std(np.diff(ys[10:])) < 0.5 * np.std(np.diff(xs[10:]))  # frame-to-frame jumps shrink more


def _info(angles: tuple[float, float, float], exp: float, shift: float, scale: float) -> KpInfo:
    p, y, r = (torch.tensor([[a]]) for a in angles)
    return KpInfo(
        pitch=p,
        yaw=y,
        roll=r,
        t=torch.full((1, 3), shift),
        exp=torch.full((1, 21, 3), exp),
        scale=torch.tensor([[scale]]),
        kp=torch.zeros(1, 21, 3),
        rotation=rotation_matrix(p, y, r),
    )


def test_motion_smoother_filters_each_quantity_and_rebuilds_the_rotation() -> None:
    smoother = MotionSmoother(OneEuroParams(), RATE)
    frames = [_info((0.0, 0.0, 0.0), 0.0, 0.0, 1.0), _info((10.0, -5.0, 20.0), 0.02, 0.05, 1.1)]
    first = smoother(frames[0], 0.0)
    assert first is frames[0]  # the first frame after a reset can be the reference as it is
    second = smoother(frames[1], TE)
    beta_deg = 0.3 * math.pi / 180
    want_roll = reference_one_euro([0.0, 20.0], [0.0, TE], 4.0, beta_deg, 1.0)[1]
    want_exp = reference_one_euro([0.0, 0.02], [0.0, TE], 4.0, 0.3, 1.0)[1]
    want_scale = reference_one_euro([1.0, 1.1], [0.0, TE], 4.0, 0.3, 1.0)[1]
    assert float(second.roll) == pytest.approx(want_roll, abs=1e-5)
    assert 0.0 < float(second.roll) < 20.0
    assert torch.allclose(second.exp, torch.full((1, 21, 3), want_exp), atol=1e-7)
    assert float(second.scale) == pytest.approx(want_scale, abs=1e-6)
    assert torch.equal(second.rotation, rotation_matrix(second.pitch, second.yaw, second.roll))
    assert torch.equal(second.kp, frames[1].kp)

    smoother.reset()
    again = smoother(frames[1], 1.0)
    assert again is frames[1]


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="cutoffs"):
        OneEuroParams(min_cutoff=0.0)
    with pytest.raises(ValueError, match="rate_hz"):
        OneEuroFilter(rate_hz=0.0)
