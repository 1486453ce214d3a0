"""The stage interface: one processing step the engine runs on every frame, switchable at run time."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from mirage_desktop.engine.frame import Frame

StageState = Literal["off", "loading", "ready", "unavailable", "failed"]


@dataclass(frozen=True)
class StageStatus:
    """Where a stage stands, for code to act on (``state``, ``model_group``) and for people to read (``reason``).

    ``model_group`` names the ``mirage-models download`` group that would make the stage run (it may be another
    stage's group: Animate needs face detection), or None when downloading would not help.
    """

    state: StageState
    reason: str = ""
    model_group: str | None = None


class StageUnavailable(RuntimeError):
    """A stage cannot run (model missing, broken file). The message is shown to people as the reason;
    ``model_group`` is the model group whose download fixes it (None when a download would not)."""

    def __init__(self, message: str, model_group: str | None = None) -> None:
        super().__init__(message)
        self.model_group = model_group


class Stage(ABC):
    """A named step with an on/off switch and a structured :meth:`status` (a reason for people included).

    ``process`` runs on the engine's processing thread only. ``set_enabled`` may be called from any thread and
    takes effect on the next frame; it is a plain attribute write (atomic in CPython), so the per-frame path takes
    no lock. ``prepare`` loads what the stage needs and is called off the per-frame path (on enable, or by the
    engine's processing thread before the first frame that needs it).

    The engine records errors of ``process`` in ``failures`` and ``reason`` (and switches the stage off after too
    many in a row); :meth:`status` reports a stage with failures as "failed" without reading the reason's text.
    """

    #: Short machine name (used in stats, metrics labels and ``--enable``).
    name: str = "stage"
    #: Label shown in the window.
    label: str = "Stage"
    #: True for a stage slower than the camera (a generator network): the engine runs ``process`` on the stage's
    #: own worker thread with the newest frame whenever the worker is idle, and shows its latest result on every
    #: frame, so the video keeps the camera's rate (engine/stage_worker.py). ``process`` then gets a frame of its
    #: own whose arrays are read-only (shared with the video path): return a new image, never write in place.
    #: Ignored in ``every_frame`` mode (offline rendering runs every stage on every frame). May be set per instance.
    asynchronous: bool = False

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._reason = "" if enabled else "off"
        self._model_group: str | None = None  # the model group the current reason asks for
        self._state: StageState = "loading" if enabled else "off"
        self.failures = 0
        self._ready = False
        self._error: str | None = None  # why the last prepare() failed; cleared by reset() or re-enabling
        self._loader: threading.Thread | None = None
        self._prepare_lock = threading.Lock()

    def process_when_off(self, frame: Frame) -> Frame:
        """What the processing thread does with a frame while the stage is switched off: pass it through. A stage
        whose per-frame state a later stage still needs while it is off (the face tracker for the avatar)
        overrides this, so that state keeps one owner, the processing thread."""
        return frame

    # ----------------------------------------------------------------------------------------- status
    @property
    def reason(self) -> str:
        """Why the stage is off or not doing its job, for people ("" when all is well)."""
        return self._reason

    @reason.setter
    def reason(self, text: str) -> None:
        self._reason = text
        self._model_group = None  # a plain reason asks for no download; set_reason attaches one

    def set_reason(self, text: str, model_group: str | None = None) -> None:
        """A reason for people, and the model group whose download would remove it."""
        self._reason = text
        self._model_group = model_group

    def status(self) -> StageStatus:
        """The stage's state, reason and the model group it needs; cheap, any thread."""
        if self._loader is not None:
            return StageStatus("loading", self._reason)
        state = self._state
        if state != "off" and self.failures:  # the engine caught errors in process() (and may have switched it off)
            return StageStatus("failed", self._reason)
        return StageStatus(state, self._reason, self._model_group)

    # ------------------------------------------------------------------------------------------ switch
    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            switched_off = self._state == "off" or (not self.enabled and self.failures > 0)
            self.enabled = True
            self.failures = 0
            self._error = None  # switching on again retries a failed load
            if switched_off:  # by the user, or by the engine after failures: that reason is over
                self.reason = ""
            self._state = "ready" if self._ready else "loading"
        else:
            self.enabled = False
            self.failures = 0
            self.reason = "off"
            self._state = "off"

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
            self._error = str(exc)
            self.set_reason(self._error, exc.model_group)
            self._state = "unavailable"
        except Exception as exc:  # a broken model file must not kill the app
            self._error = self.reason = f"{type(exc).__name__}: {exc}"
            self._state = "failed"
        else:
            self._ready = True
            self.reason = "" if self.enabled else "off"
            self._state = "ready" if self.enabled else "off"
        finally:
            with self._prepare_lock:
                self._loader = None

    def reset(self) -> None:
        """Forget loaded resources (for example after new model files arrived); the next frame reloads."""
        with self._prepare_lock:
            self._ready = False
            self._error = None
            if self._state == "ready":
                self._state = "loading"
            self.release()

    def prepare(self) -> None:
        """Load models etc. Raise :class:`StageUnavailable` with a message that names the fix and the model group."""

    def release(self) -> None:
        """Drop what ``prepare`` loaded."""

    def stats(self) -> dict[str, Any]:
        """Extra JSON-ready numbers merged into the engine's stats for this stage (provider, mode, ...)."""
        return {}

    @abstractmethod
    def process(self, frame: Frame) -> Frame:
        """Transform the frame (or annotate it) and return it. Exceptions are caught by the engine."""
