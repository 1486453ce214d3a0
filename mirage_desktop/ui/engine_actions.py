"""What the user asks of the engine from the window: the stage switches, Recalibrate, the avatar's backend and
precision, the Animation options, picking the driving face and downloading a stage's models.

Everything goes to the session's :class:`~mirage_desktop.control.engine_control.EngineControl`. A call that may
block runs on the worker pool when the control's calls wait for the network (a remote engine) and at once
otherwise, so a switch on this computer shows in the same event (:meth:`EngineActions.forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QWidget

from mirage_desktop.animation_options import AnimationOptionError, AnimationOptions
from mirage_desktop.engine.stage import StageStatus
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.session import Session
from mirage_desktop.stages.specs import stage_spec
from mirage_desktop.ui.controls import ControlsPanel
from mirage_desktop.ui.downloads import ModelDownload
from mirage_desktop.ui.preview import PreviewWidget
from mirage_desktop.ui.workers import WorkerPool


#: Shows a message to the user: (level, text) and optionally how long, in ms.
Notify = Callable[..., None]
_T = TypeVar("_T")


class EngineActions(QObject):
    """Connects the Models and Animation cards and the preview's face clicks to the session; ``save`` persists the
    settings now, ``save_soon`` once a slider rests, ``notify`` shows a message."""

    def __init__(self, session: Session, controls: ControlsPanel, preview: PreviewWidget, pool: WorkerPool,
                 save: Callable[[], None], save_soon: Callable[[], None],
                 notify: Notify, parent: QWidget) -> None:
        super().__init__(parent)
        self.session = session
        self.controls = controls
        self._pool = pool
        self._save = save
        self._save_soon = save_soon
        self._notify = notify
        self._parent = parent
        self._download: ModelDownload | None = None
        controls.stage_toggled.connect(self.set_stage_enabled)
        controls.download_requested.connect(self.download_models)
        controls.recalibrate_requested.connect(self.recalibrate)
        controls.inference.changed.connect(self.set_inference)
        controls.animation.changed.connect(self.set_animation_option)
        controls.animation.reset_requested.connect(self.reset_animation)
        preview.face_clicked.connect(self.pick_face)

    def forward(self, call: Callable[[], _T], on_result: Callable[[_T], None],
                on_error: Callable[[BaseException], None]) -> None:
        """A control call that may block: on the worker pool when it waits for the network, else at once."""
        if self.session.control.blocking:
            self._pool.run(call, on_result=on_result, on_error=on_error)
            return
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - shown to the user, as a worker's failure would be
            on_error(exc)
            return
        on_result(result)

    # ================================================================================================ state
    def show_initial_state(self) -> None:
        """The switches, the Animation card and the backend chooser as the session stands."""
        control, controls = self.session.control, self.controls
        for name, toggle in controls.stages.items():
            if control.has_stage(name):
                self.show_stage(name)
            else:
                toggle.set_available(False, "Not available in this build.")
        settings = self.session.settings
        controls.animation.show_options(settings.animation)
        inference = controls.inference
        inference.show_choice(*self.session.inference())
        note = control.inference_note()
        inference.setEnabled(not note)
        if note:
            inference.show_running(None)
            inference.setToolTip(note)

    def show_stage(self, name: str) -> None:
        control = self.session.control
        self.controls.stages[name].show_status(control.stage_enabled(name), control.stage_status(name))

    def refresh(self, stats: EngineStats) -> str:
        """Show each switch's state and what runs the avatar's networks; returns the first switched-on stage's
        problem for the status bar ("" when none)."""
        control, reason = self.session.control, ""
        for name in self.controls.stages:
            if not control.has_stage(name):
                continue
            enabled, status = control.stage_enabled(name), control.stage_status(name)
            self.controls.stages[name].show_status(enabled, status)
            if enabled and status.reason and not reason:
                reason = f"{stage_spec(name).label}: {status.reason}"
        if not control.inference_note():
            self.controls.inference.show_running(stats.backends.get("liveportrait"))
        return reason

    # ================================================================================================ stages
    @Slot(str, bool)
    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        if not self.session.control.has_stage(name):
            self._notify("warning", f"{stage_spec(name).label} is not available in this build.")
            self.controls.stages[name].show_status(False, StageStatus("off"))
            return

        def switched(_result: object) -> None:
            self.show_stage(name)
            self._save()

        def failed(exc: BaseException) -> None:
            self._notify("error", str(exc))
            self.show_stage(name)

        self.forward(lambda: self.session.control.set_stage_enabled(name, enabled), switched, failed)

    def toggle_stage(self, name: str) -> None:
        toggle = self.controls.stages[name]
        if toggle.checkbox.isEnabled():
            toggle.checkbox.toggle()  # emits toggled -> set_stage_enabled
        else:
            self.set_stage_enabled(name, True)

    @Slot()
    def recalibrate(self) -> None:
        where = self.session.control.where
        self.forward(self.session.control.recalibrate, lambda answer: self._notify(*answer),
                     lambda exc: self._notify("error", f"Recalibrate on {where} failed: {exc}"))

    @Slot(str, str)
    def set_inference(self, backend: str, precision: str) -> None:
        """Backend or precision of the avatar's networks changed: remembered now; the stage reloads off the GUI
        thread (it may first finish a load in progress) and says "loading..." meanwhile."""
        if self.session.avatar_stage is None:
            return

        def done(reloads: object) -> None:
            self._save()
            if reloads:
                self._notify("info", "Reloading the avatar's networks with the new choice...", 5_000)

        def failed(exc: BaseException) -> None:
            self._notify("error", str(exc))
            self.controls.inference.show_choice(*self.session.inference())

        self._pool.run(lambda: self.session.set_inference(backend, precision), on_result=done, on_error=failed)

    # ================================================================================================ animation
    @Slot(str, object)
    def set_animation_option(self, key: str, value: Any) -> None:
        """One Animation option changed: the avatar uses it from the next frame; the settings keep it. On a remote
        engine the change goes to its ``/control/animation`` off the GUI thread."""
        where = self.session.control.where

        def failed(exc: BaseException) -> None:
            self._notify("error", str(exc) if isinstance(exc, AnimationOptionError) else
                              f"Animation options on {where}: {exc}")
            self.controls.animation.show_options(self.session.settings.animation)

        self.forward(lambda: self.session.set_animation_options(**{key: value}), lambda _: self._save_soon(), failed)

    @Slot()
    def reset_animation(self) -> None:
        def done(options: AnimationOptions) -> None:
            self.controls.animation.show_options(options)
            self._save()
            self._notify("info", "Animation options are back to their defaults.", 4000)

        def failed(exc: BaseException) -> None:
            self._notify("error", f"Animation options on {self.session.control.where}: {exc}")
            self.controls.animation.show_options(self.session.settings.animation)

        self.forward(self.session.reset_animation_options, done, failed)

    @Slot(float, float)
    def pick_face(self, x: float, y: float) -> None:
        """A click on a face in the camera picture: that face drives the avatar from now on."""
        level, text = self.session.pick_face(x, y)
        self._notify(level, text, 4000)

    # ================================================================================================ models
    @Slot(str)
    def download_models(self, name: str) -> None:
        """Download the models one stage needs, with a cancellable progress dialog."""
        if self._download is not None:
            return
        download = ModelDownload(self.session, name, self._pool, self._parent)
        download.message.connect(self._notify)
        download.succeeded.connect(self._on_models_arrived)
        download.finished.connect(self._on_download_finished)
        self._download = download
        download.start()

    def cancel_download(self) -> None:
        if self._download is not None:
            self._download.cancel()

    @Slot(str)
    def _on_models_arrived(self, name: str) -> None:
        control = self.session.control
        control.models_arrived(name)
        if control.has_stage(name):
            self.show_stage(name)
        self._save()

    @Slot()
    def _on_download_finished(self) -> None:
        download, self._download = self._download, None
        if download is not None:
            download.deleteLater()
