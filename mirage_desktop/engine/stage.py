"""The stage interface: one processing step the engine runs on every frame, switchable at run time."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from mirage_desktop.engine.frame import Frame


class StageUnavailable(RuntimeError):
    """A stage cannot run (model missing, broken file); the message is shown to the user as the reason."""


class Stage(ABC):
    """A named step with an on/off switch and a human-readable reason when it is off or failing.

    ``process`` runs on the engine's processing thread only. ``set_enabled`` may be called from any thread and
    takes effect on the next frame; it is a plain attribute write (atomic in CPython), so the per-frame path takes
    no lock. ``prepare`` loads what the stage needs and is called off the per-frame path (on enable, or by the
    engine's processing thread before the first frame that needs it).
    """

    #: Short machine name (used in stats, metrics labels and ``--enable``).
    name: str = "stage"
    #: Label shown in the window.
    label: str = "Stage"

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.reason = "" if enabled else "off"
        self._ready = False
        self._prepare_lock = threading.Lock()
        self.failures = 0

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        if enabled:
            self.failures = 0
            if self.reason == "off" or self.reason.startswith("disabled after"):
                self.reason = ""
        else:
            self.reason = "off"

    def ensure_ready(self) -> bool:
        """Load the stage's resources once; on failure record the reason and return False."""
        if self._ready:
            return True
        with self._prepare_lock:
            if self._ready:
                return True
            try:
                self.prepare()
            except StageUnavailable as exc:
                self.reason = str(exc)
                return False
            self._ready = True
            if self.enabled:
                self.reason = ""
            return True

    def reset(self) -> None:
        """Forget loaded resources (for example after new model files arrived); the next frame reloads."""
        with self._prepare_lock:
            self._ready = False
            self.release()

    def prepare(self) -> None:
        """Load models etc. Raise :class:`StageUnavailable` with a message that names the fix."""

    def release(self) -> None:
        """Drop what ``prepare`` loaded."""

    @abstractmethod
    def process(self, frame: Frame) -> Frame:
        """Transform the frame (or annotate it) and return it. Exceptions are caught by the engine."""
