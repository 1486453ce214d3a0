"""One running Mirage, without Qt: the engine and its stages, the outputs, the token and the avatar over Settings.

``mirage --headless`` and the window both drive the app through a :class:`Session`, so starting the virtual
camera, serving WebRTC, rotating the token, choosing an avatar or switching a stage is written once. The session
changes ``settings`` but never saves them: :meth:`Session.save` does, when the caller wants (the window after
every change, headless only for a new token). Slow calls (opening the virtual camera, starting the server,
preparing an avatar) say so; the window runs them on a worker thread, and the session's lock makes their
hand-over to the engine safe against :meth:`Session.close`.

Where the animation runs is :attr:`Session.control`, one
:class:`~mirage_desktop.control.engine_control.EngineControl`: the model stages here, or (``remote=`` a
:class:`~mirage_desktop.remote.link.RemoteLink`, from ``--remote URL`` or the window's Engine choice) a remote engine
whose stage switches, Recalibrate, avatar and animation options cross the network. The stage switches, Recalibrate
and the figures are the control's; the session adds what both share (the settings, the outputs, the avatar file).
"""

from __future__ import annotations

import logging
import shutil
import threading
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirage_desktop.animation_options import AnimationOptions
from mirage_desktop.config import (
    Settings,
    bundled_avatar,
    checked_setting,
    save_settings,
)
from mirage_desktop.control.engine_control import EngineControl
from mirage_desktop.control.local_engine import LocalEngine
from mirage_desktop.control.remote_engine import RemoteEngine
from mirage_desktop.doctor.check import Check
from mirage_desktop.doctor.run import gpu_warnings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource, Source, SourceError, load_image
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.stages.avatar.stage import AvatarError, AvatarStage
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.stages.factory import make_engine_source
from mirage_desktop.stages.specs import SCRFD, stage_spec

if TYPE_CHECKING:
    from aiortc import RTCIceServer

    from mirage_desktop.audio.output import MicrophoneOutput
    from mirage_desktop.outputs.recorder import Recorder
    from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput
    from mirage_desktop.api.server import HttpServer

logger = logging.getLogger(__name__)


class SessionClosed(RuntimeError):
    """The session was closed while an output was starting; the output has been closed again."""


class Session:
    """The engine plus everything around it. ``remember=True`` (the window) records the output switches in
    ``settings`` so they come back next time; headless runs leave them as they were."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        *,
        settings_path: Path | None = None,
        every_frame: bool = False,
        max_frames: int | None = None,
        remember: bool = False,
        remote: RemoteLink | None = None,
    ) -> None:
        self.settings = settings
        self.settings_path = settings_path
        self.remember = remember
        self.remote = remote
        self.control: EngineControl = (
            RemoteEngine(remote, source, self.demo_source, animation=settings.animation, every_frame=every_frame,
                         max_frames=max_frames)
            if remote is not None else LocalEngine(settings, source, every_frame=every_frame, max_frames=max_frames))
        self.engine: Engine = self.control.engine
        self.virtual_camera: VirtualCameraOutput | None = None
        self.server: HttpServer | None = None
        self.recorder: Recorder | None = None
        self.microphone: MicrophoneOutput | None = None
        self._lock = threading.Lock()  # guards the outputs' hand-over against close()
        self._closed = False
        self.setup_warnings: list[Check] | None = None  # the doctor's word on an unused GPU, at the first start

    # ================================================================================================ settings
    def save(self) -> Path:
        """Write the settings file; OSError when it cannot be written (the caller tells the user)."""
        return save_settings(self.settings, self.settings_path)

    # ================================================================================================ source
    def make_source(self, spec: str | None = None, *, paced: bool = True) -> Source:
        """A source for ``spec`` (default: the settings'); SourceError naming the fix when it cannot be."""
        return make_engine_source(self.settings, spec, paced=paced)

    def demo_source(self) -> DemoSource:
        s = self.settings
        return DemoSource(s.output_width, s.output_height, s.fps)

    def set_source(self, spec: str) -> None:
        """Switch the engine to ``spec`` (the capture thread opens it) and remember it; SourceError if unusable."""
        self.engine.set_source(self.make_source(spec))
        self.settings.source = spec

    def use_demo(self) -> None:
        """Replace a source that failed to open by the demo (before a restart of the engine)."""
        self.engine.set_source(self.demo_source())

    # ================================================================================================ stages
    def download_group(self, name: str) -> str:
        """The model group to fetch for a stage: the one its status asks for (Animate may ask for face
        detection's), else the stage's own."""
        status = self.control.stage_status(name) if self.control.has_stage(name) else None
        return (status.model_group if status else None) or stage_spec(name).model_group

    def inference(self) -> tuple[str, str]:
        """The Animate stage's chosen (backend, precision), as in the settings."""
        return self.settings.liveportrait_backend, self.settings.liveportrait_precision

    def set_inference(self, backend: str, precision: str) -> bool:
        """Run the Animate stage's networks on ``backend`` at ``precision`` from now on (remembered in the
        settings) and reload the stage if either changed; True when it reloads. ConfigError names the choices.
        Blocks while the stage is loading (a first "auto" measures for minutes on a CPU): call it off the GUI
        thread. A remote engine keeps its own choice (its ``--backend``)."""
        backend = checked_setting("liveportrait_backend", backend, "the window")
        precision = checked_setting("liveportrait_precision", precision, "the window")
        if (backend, precision) == self.inference():
            return False
        self.settings.liveportrait_backend, self.settings.liveportrait_precision = backend, precision
        stage = self.avatar_stage
        if stage is None:
            return False
        stage.reset()  # the next frame builds the networks again with the new choice
        return True

    @property
    def avatar_stage(self) -> AvatarStage | None:
        """The local avatar stage; None in remote mode and in builds without it."""
        return self.control.avatar_stage

    # ================================================================================================ animation
    def set_animation_options(self, **changes: Any) -> AnimationOptions:
        """Change Animation options (names of :class:`AnimationOptions`): the avatar stage uses them from the next
        frame and the settings keep them. AnimationOptionError naming the allowed values for a bad one (nothing is
        changed then). Returns every option as it now stands. The window's Animation card and a remote client
        both come through here."""
        self.settings.animation = self.settings.animation.replace(**changes)
        self.control.set_animation(self.settings.animation)
        return self.settings.animation

    def reset_animation_options(self) -> AnimationOptions:
        """Every Animation option back to its default."""
        return self.set_animation_options(**AnimationOptions().to_json())

    # ================================================================================================ faces
    @property
    def face_stage(self) -> FaceDetectionStage | None:
        """The local face detection stage; None in remote mode and in builds without it."""
        return self.control.face_stage

    def pick_face(self, x: float, y: float) -> tuple[str, str]:
        """Make the face at camera pixel (x, y) the one that drives the avatar, from the next frame (a point on no
        face keeps the current driver); returns (level, message)."""
        stage = self.face_stage
        if stage is None:
            return "warning", f"Picking a face needs {SCRFD.label}, which is not available in this build."
        if not stage.enabled:
            return "info", f"Switch on {SCRFD.label} ({SCRFD.shortcut}) to pick the face that drives the avatar."
        stage.pick_face(x, y)
        return "info", "The face you clicked drives the avatar now (outlined); a click on no face changes nothing."

    # ================================================================================================ avatar
    def set_avatar(self, path: Path, copy_to: Path | None = None) -> tuple[Path, str]:
        """Slow (face detection): check the portrait, copy it to ``copy_to`` if given, hand it to the avatar stage
        and record it in the settings.

        Returns (the avatar's path, a note when the stage cannot take it yet because models are missing: the choice
        is kept). Raises :class:`AvatarError` for an unusable portrait; a copy made here is removed again, so a bad
        portrait leaves nothing behind. Remote: the portrait is uploaded (checked here and there) and used there.
        """
        try:
            load_image(path)
        except SourceError as exc:
            raise AvatarError(str(exc)) from exc
        target = path
        if copy_to is not None:
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy_to)
            target = copy_to
        try:
            note = self.control.set_avatar(target, path.name)
        except BaseException:
            if copy_to is not None:
                copy_to.unlink(missing_ok=True)
            raise
        self.settings.avatar = None if target == bundled_avatar() else target
        return target, note

    # ================================================================================================ token
    def ensure_token(self) -> bool:
        """Make the API token if there is none; True when a new one was made (the caller saves it)."""
        new = not self.settings.token
        self.settings.ensure_token()
        return new

    def rotate_token(self) -> str:
        """A new token; the server reads the settings' token on every request, so the old one is refused now."""
        self.settings.token = ""
        return self.settings.ensure_token()

    # ================================================================================================ outputs
    def start_virtual_camera(self) -> VirtualCameraOutput:
        """Slow (opens the device): start the virtual camera and feed it. Raises with the fix when it cannot."""
        from mirage_desktop.outputs.virtual_camera import VirtualCameraOutput

        s = self.settings
        output = VirtualCameraOutput(s.output_width, s.output_height, s.fps)
        try:
            output.start()
        except BaseException:
            try:
                output.close()
            except Exception:
                logger.exception("Closing the virtual camera failed")
            self._remember(virtual_camera=False)
            raise
        self._attach(output, "virtual_camera")
        self._remember(virtual_camera=True)
        return output

    def stop_virtual_camera(self) -> None:
        with self._lock:
            output, self.virtual_camera = self.virtual_camera, None
        if output is not None:
            self.engine.remove_output(output)  # also closes it
        self._remember(virtual_camera=False)

    def virtual_camera_status(self) -> tuple[str, bool]:
        """(what the virtual camera does, whether that is an error): "Sending to /dev/video10 (v4l2loopback)"."""
        output = self.virtual_camera
        if output is None:
            return "Off", False
        if output.error is not None:
            return str(output.error), True
        if output.running and output.device:
            return f"Sending to {output.device}" + (f" ({output.backend})" if output.backend else ""), False
        return str(output.status or "on").capitalize(), False

    def start_microphone(self) -> MicrophoneOutput:
        """Slow (makes the virtual microphone): the real microphone, delayed like the video, into the Mirage
        Microphone (:mod:`mirage_desktop.audio`). Raises with what to install when it cannot be made."""
        from mirage_desktop.audio.output import MicrophoneOutput
        from mirage_desktop.audio.sync import VideoDelay, round_trip_while_shown

        s = self.settings
        round_trip = None if self.remote is None else round_trip_while_shown(self.engine.stages,
                                                                             self.remote.client.round_trip)
        output = MicrophoneOutput(s.microphone, VideoDelay(self.engine, lambda: self.virtual_camera, round_trip),
                                  offset_ms=s.audio_offset_ms)
        try:
            output.start()
        except BaseException:
            self._remember(virtual_microphone=False)
            raise
        self._attach(output, "microphone")
        self._remember(virtual_microphone=True)
        return output

    def set_microphone_device(self, spec: str) -> None:
        """Capture from ``spec`` (as ``--microphone`` takes it) from now on, and remember it."""
        self.settings.microphone = spec
        if self.microphone is not None:
            self.microphone.pipe.set_microphone(spec)

    def set_audio_offset(self, offset_ms: float) -> None:
        """The user's correction of the voice's delay (positive: later), at once, and remembered."""
        self.settings.audio_offset_ms = float(offset_ms)
        if self.microphone is not None:
            self.microphone.pipe.set_offset_ms(offset_ms)

    def stop_microphone(self) -> None:
        with self._lock:
            output, self.microphone = self.microphone, None
        if output is not None:
            self.engine.remove_output(output)  # also closes it and removes the virtual device
        self._remember(virtual_microphone=False)

    def start_http(self, *, ssl_context: ssl.SSLContext | None = None,
                   ice_servers: Sequence[RTCIceServer] = ()) -> HttpServer:
        """Slow (binds the port, starts the loop): serve /health, /metrics and WebRTC, over HTTPS with
        ``ssl_context``, with STUN/TURN ``ice_servers`` for peers behind NAT. ValueError or OSError when it cannot;
        the token is made first if there is none (see :meth:`ensure_token` to know and save it)."""
        from mirage_desktop.api.server import HttpServer

        server = HttpServer(self.engine, self.settings, ssl_context=ssl_context, ice_servers=ice_servers)
        server.setup_warnings = lambda: [c.to_json() for c in self.setup_warnings or []]  # /health's
        try:
            server.start()
        except BaseException:
            self._remember(http_enabled=False)
            raise
        with self._lock:
            if self._closed:
                server.stop()
                raise SessionClosed("The session closed while the server started.")
            self.server = server
        self._remember(http_enabled=True)
        return server

    def stop_http(self) -> None:
        with self._lock:
            server, self.server = self.server, None
        if server is not None:
            try:
                server.stop()
            except Exception:
                logger.exception("Stopping the HTTP server failed")
        self._remember(http_enabled=False)

    def start_recorder(self, path: Path, *, keep_every_frame: bool = False) -> Recorder:
        """Record the output to an MP4 at the source's rate; RecorderError naming the fix when it cannot."""
        from mirage_desktop.outputs.recorder import Recorder

        recorder = Recorder(path, fps=self.engine.source.fps, keep_every_frame=keep_every_frame,
                            on_error=lambda reason: self.engine.notify("error", reason))
        self._attach(recorder, "recorder")
        return recorder

    def _attach(self, output: VirtualCameraOutput | Recorder | MicrophoneOutput, slot: str) -> None:
        with self._lock:
            if self._closed:
                output.close()
                raise SessionClosed("The session closed while the output started.")
            setattr(self, slot, output)
            self.engine.add_output(output)

    def _remember(self, **switches: bool) -> None:
        if self.remember:
            for name, value in switches.items():
                setattr(self.settings, name, value)

    # ================================================================================================ lifecycle
    def start(self, *, open_source: bool = True) -> None:
        self._say_setup_warnings()
        self.engine.start(open_source=open_source)

    def _say_setup_warnings(self) -> None:
        """A GPU that is there but unused (torch without CUDA, a provider that does not load, the CPU onnxruntime
        shadowing the GPU one) is said once, at start, with the doctor's fix: to the engine's listeners (the
        window's banner, headless stderr) and in /health. A remote engine's GPU is its own business."""
        if self.setup_warnings is None:
            self.setup_warnings = [] if self.remote is not None else gpu_warnings(self.settings)
            for check in self.setup_warnings:
                self.engine.notify("warning", f"{check.detail}. Fix: {check.fix}")

    def close(self) -> None:
        """Stop the server, then the engine, which closes the source and every output. Idempotent; the output
        switches stay as they were in the settings, so they come back on the next start."""
        with self._lock:
            self._closed = True
            server, self.server = self.server, None
        if server is not None:
            try:
                server.stop()
            except Exception:
                logger.exception("Stopping the HTTP server failed")
        self.control.close()  # the engine, and a remote engine's link after its last figures
        self.virtual_camera = None
        self.recorder = None
        self.microphone = None
