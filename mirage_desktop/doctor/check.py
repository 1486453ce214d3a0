"""One check's verdict and the report they make: the shape ``mirage doctor --json`` writes and the window copies.

A status says what the user can do: ``ok`` nothing; ``warn`` Mirage runs, but slower or without a part (the fix
says how to get it back); ``fail`` Mirage cannot do its main job until the fix is applied (the doctor's exit status
is non-zero); ``skip`` the check does not apply here or cannot run now (the detail says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)
#: the check names every report has, in report order (``remote`` joins them when one is configured)
NAMES = ("system", "gpu", "torch", "onnxruntime", "virtual_camera", "models", "cameras", "settings", "storage")
REMOTE = "remote"


@dataclass(frozen=True)
class Check:
    """``detail`` is what was found, one line; ``fix`` the exact thing to do (commands where there are), empty
    when there is nothing to do. A warn or fail without a fix is a bug, refused here."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Check {self.name!r}: status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.status in (WARN, FAIL) and not self.fix.strip():
            raise ValueError(f"Check {self.name!r} is {self.status} without a fix: {self.detail}")

    @property
    def problem(self) -> bool:
        return self.status in (WARN, FAIL)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}

    def line(self, width: int = 15) -> str:
        """``warn  gpu             <detail>`` and, for a problem, ``      fix: <fix>`` under it."""
        text = f"{self.status:<5} {self.name:<{width}} {self.detail}"
        return f"{text}\n{'':<6}fix: {self.fix}" if self.problem else text


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @classmethod
    def of(cls, checks: Sequence[Check]) -> Report:
        return cls(tuple(checks))

    @property
    def blocking(self) -> bool:
        """True when a check failed: the main job (the live avatar) cannot run until it is fixed."""
        return any(c.status == FAIL for c in self.checks)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"No check named {name!r}; the report has {', '.join(c.name for c in self.checks)}")

    def to_json(self) -> dict[str, object]:
        return {"checks": [c.to_json() for c in self.checks], "blocking": self.blocking}

    def text(self) -> str:
        """One line per check (a problem's fix on the line under it), then the verdict: what ``mirage doctor``
        prints and the window's Copy report copies."""
        width = max((len(c.name) for c in self.checks), default=0)
        counts = ", ".join(f"{sum(c.status == s for c in self.checks)} {s}" for s in STATUSES)
        verdict = ("a check that blocks the live avatar failed: apply its fix" if self.blocking
                   else "nothing blocks the live avatar")
        return "\n".join([*(c.line(width) for c in self.checks), f"{counts}: {verdict}"]) + "\n"
