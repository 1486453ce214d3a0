"""The precision guard: a reduced-precision module that produces garbage goes back to float32, and says so.

fp16 overflows to inf/NaN on some GPUs and drivers, and a collapsed output (flat, black) is the peers' top complaint
("black boxes"). The guard checks the output at load (against the float32 module on a probe input) and then on a
live frame every ``interval_s`` seconds (one device sync then, none in between), and on a bad output switches the
module to float32 for good, re-running that frame, with a reason the stage can show. The user never has to know the
word "half".
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from mirage_desktop.liveportrait.backends.base import ModuleRunner, first_tensor

logger = logging.getLogger(__name__)

#: below this standard deviation an output is flat (a black or grey box), which no real frame of W or G is
FLAT_STD = 1e-4
#: at load: mean |reduced - fp32| above this on the probe means the reduced path is broken, not just imprecise
PROBE_MEAN_ABS = 0.05


def problem(out: torch.Tensor, reference: torch.Tensor | None = None) -> str | None:
    """Why ``out`` is unusable (non-finite values, flat, far from ``reference``), or None; one host sync."""
    t = out.detach().float()
    finite = torch.isfinite(t).all()
    std = torch.nan_to_num(t).std()
    far = (t - reference).abs().mean() if reference is not None else torch.zeros((), device=t.device)
    finite_ok, std_v, far_v = bool(finite), float(std), float(far)
    if not finite_ok:
        return "non-finite values"
    if std_v < FLAT_STD:
        return "a flat (black) output"
    if reference is not None and far_v > PROBE_MEAN_ABS:
        return f"an output far from float32 (mean error {far_v:.3f})"
    return None


class GuardedModule:
    """A reduced-precision runner with its float32 twin; ``active`` is whichever runs now."""

    def __init__(self, name: str, fast: ModuleRunner, fp32: ModuleRunner, interval_s: float = 5.0) -> None:
        self.name = name
        self.fast = fast
        self.fp32 = fp32
        self.active: ModuleRunner = fast
        self.interval_s = interval_s
        self.reason: str | None = None
        self._next_check = 0.0  # the first live frame is checked

    @property
    def backend(self) -> str:
        return self.active.backend

    @property
    def precision(self) -> str:
        return self.active.precision

    def probe(self, *inputs: torch.Tensor) -> str | None:
        """The load-time check: the fast path against float32 on ``inputs``; switches and returns the reason."""
        with torch.inference_mode():
            why = problem(first_tensor(self.fast(*inputs)), first_tensor(self.fp32(*inputs)).float())
        if why is not None:
            self._switch(why)
        return self.reason

    def _switch(self, why: str) -> None:
        self.active = self.fp32
        self.reason = f"{self.name} gave {why} at {self.fast.precision}; it now runs at full precision (fp32)"
        logger.warning("precision guard: %s", self.reason)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        out = self.active(*inputs)
        if self.active is self.fast:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self.interval_s
                why = problem(first_tensor(out))
                if why is not None:
                    self._switch(why)
                    out = self.fp32(*inputs)
        return out
