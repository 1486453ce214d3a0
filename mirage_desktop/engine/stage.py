"""The stage interface: one processing step the engine runs on every frame, switchable at run time."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

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
        self.failures = 0
        self._ready = False
        self._error: str | None = None  # why the last prepare() failed; cleared by reset() or re-enabling
        self._loader: threading.Thread | None = None
        self._prepare_lock = threading.Lock()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        if enabled:
            self.failures = 0
            self._error = None  # switching on again retries a failed load
            if self.reason == "off" or self.reason.startswith("disabled after"):
                self.reason = ""
        else:
            self.reason = "off"

    @property
    def ready(self) -> bool:
        return self._ready

    def ensure_ready(self, block: bool = True) -> bool:
        """Load the stage's resources once. The engine calls it with ``block=False``: loading then runs on a
        background thread while frames pass through (reason "loading..."), so enabling a model never freezes the
        video. A failed load records its reason and is not retried until :meth:`reset` or re-enabling."""
        if self._ready:
            return True
        if self._error is not None:
            return False
        with self._prepare_lock:
            loader = self._loader
            if loader is None and not self._ready:
                loader = self._loader = threading.Thread(target=self._load, name=f"load-{self.name}", daemon=True)
                self.reason = "loading..."
                loader.start()
        if block and loader is not None:
            loader.join()
        return self._ready

    def _load(self) -> None:
        try:
            self.prepare()
        except StageUnavailable as exc:
            self._error = self.reason = str(exc)
        except Exception as exc:  # a broken model file must not kill the app
            self._error = self.reason = f"{type(exc).__name__}: {exc}"
        else:
            self._ready = True
            self.reason = "" if self.enabled else "off"
        finally:
            with self._prepare_lock:
                self._loader = None

    def reset(self) -> None:
        """Forget loaded resources (for example after new model files arrived); the next frame reloads."""
        with self._prepare_lock:
            self._ready = False
            self._error = None
            self.release()

    def prepare(self) -> None:
        """Load models etc. Raise :class:`StageUnavailable` with a message that names the fix."""

    def release(self) -> None:
        """Drop what ``prepare`` loaded."""

    def stats(self) -> dict[str, Any]:
        """Extra JSON-ready numbers merged into the engine's stats for this stage (provider, mode, ...)."""
        return {}

    @abstractmethod
    def process(self, frame: Frame) -> Frame:
        """Transform the frame (or annotate it) and return it. Exceptions are caught by the engine."""
