"""Smoothing of the driving motion that does not lag: one One-Euro filter (Casiez et al., CHI 2012) per quantity.

A fixed low-pass (or a blend with the previous keypoints) trades jitter for lag at every speed. The One-Euro filter
raises its cutoff with the signal's speed: a still face is smoothed at ``min_cutoff`` (jitter removed), a moving one
passes almost unfiltered. Its steady lag on a sustained move is at most 1 / (2 pi min_cutoff) seconds (40 ms at the
default 4 Hz), and it never overshoots (each output lies between the previous output and the new input).

:class:`MotionSmoother` filters what M measured on the driver (head angles, expression, shift and scale) before the
motion maths, as FasterLivePortrait does for its video sources (its parameters: 4 Hz, beta 0.3, derivative cutoff
1 Hz, 30 fps). It is the only filter on the motion: do not also blend the driven keypoints. Reset it whenever the
reference frame changes (recalibration, a new avatar, the face lost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mirage_desktop.liveportrait.motion import KpInfo, rotation_matrix

#: FasterLivePortrait's parameters (``OneEuroFilter(4, 0.3)`` at 30 fps)
MIN_CUTOFF_HZ = 4.0
BETA = 0.3
D_CUTOFF_HZ = 1.0
RATE_HZ = 30.0


@dataclass(frozen=True)
class OneEuroParams:
    """``min_cutoff`` (Hz): the smoothing of a still signal; ``beta`` (per unit of the signal per second): how fast
    the cutoff rises with speed; ``d_cutoff`` (Hz): the smoothing of the speed estimate."""

    min_cutoff: float = MIN_CUTOFF_HZ
    beta: float = BETA
    d_cutoff: float = D_CUTOFF_HZ

    def __post_init__(self) -> None:
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0):
            raise ValueError(f"One-Euro parameters {self}: the cutoffs must be > 0 Hz and beta >= 0")


def smoothing_factor(cutoff: float | torch.Tensor, te: float) -> float | torch.Tensor:
    """The exponential smoothing factor a = 1 / (1 + tau / te) of a first-order low-pass at ``cutoff`` Hz."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / te)


class OneEuroFilter:
    """Element-wise One-Euro filter on tensors of a fixed shape, on their device; stateful.

    ``t`` (seconds) is the sample's timestamp; without it the samples are taken ``1 / rate_hz`` apart.
    """

    def __init__(self, params: OneEuroParams = OneEuroParams(), rate_hz: float = RATE_HZ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz {rate_hz} must be > 0 (the frame rate when no timestamps are given)")
        self.params = params
        self.period = 1.0 / rate_hz
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next sample passes unfiltered."""
        self._x: torch.Tensor | None = None  # previous raw sample
        self._y: torch.Tensor | None = None  # previous output
        self._dx: torch.Tensor | None = None  # previous smoothed speed
        self._t: float | None = None

    def __call__(self, x: torch.Tensor, t: float | None = None) -> torch.Tensor:
        te = self.period
        if t is not None and self._t is not None and t > self._t:
            te = t - self._t
        self._t = t
        if self._x is None or self._y is None or self._dx is None:
            self._x, self._y, self._dx = x, x, torch.zeros_like(x)
            return x
        p = self.params
        dx = (x - self._x) / te
        edx = self._dx + smoothing_factor(p.d_cutoff, te) * (dx - self._dx)
        a = smoothing_factor(p.min_cutoff + p.beta * edx.abs(), te)
        y = self._y + a * (x - self._y)
        self._x, self._y, self._dx = x, y, edx
        return y


class MotionSmoother:
    """One One-Euro filter on the driver's motion: head angles, expression, translation and scale.

    The angles are filtered in degrees (the rotation is rebuilt from them, so it stays a rotation); their beta is
    ``beta`` per radian, like FasterLivePortrait's filter on rotation-matrix entries. The first frame after a reset
    comes back as the very same object, so it can serve as the reference frame.
    """

    def __init__(self, params: OneEuroParams = OneEuroParams(), rate_hz: float = RATE_HZ) -> None:
        pose = OneEuroParams(params.min_cutoff, params.beta * math.pi / 180.0, params.d_cutoff)
        self._angles = OneEuroFilter(pose, rate_hz)
        self._exp = OneEuroFilter(params, rate_hz)
        self._t = OneEuroFilter(params, rate_hz)
        self._scale = OneEuroFilter(params, rate_hz)
        self._primed = False

    def reset(self) -> None:
        """Call on recalibration (a new reference frame), a new avatar, or when the face was lost."""
        for f in (self._angles, self._exp, self._t, self._scale):
            f.reset()
        self._primed = False

    def __call__(self, info: KpInfo, t: float | None = None) -> KpInfo:
        """The smoothed motion of one driving frame (``t``: its capture time in seconds)."""
        angles = self._angles(torch.cat([info.pitch, info.yaw, info.roll], dim=1), t)
        exp, shift, scale = self._exp(info.exp, t), self._t(info.t, t), self._scale(info.scale, t)
        if not self._primed:
            self._primed = True
            return info
        pitch, yaw, roll = angles[:, 0:1], angles[:, 1:2], angles[:, 2:3]
        return KpInfo(
            pitch=pitch,
            yaw=yaw,
            roll=roll,
            t=shift,
            exp=exp,
            scale=scale,
            kp=info.kp,
            rotation=rotation_matrix(pitch, yaw, roll),
        )
