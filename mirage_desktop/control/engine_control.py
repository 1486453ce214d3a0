"""The one interface the session, the window and headless use to drive the engine, wherever the animation runs.

Two implementations: :class:`~.local_engine.LocalEngine` (the model stages on this computer) and
:class:`~.remote_engine.RemoteEngine` (a remote Mirage engine; capture, preview and outputs stay here). Each method
says whether it can block. "Never blocks" reads state kept here. "May block" waits for the network on a remote
engine, where :attr:`EngineControl.blocking` is True: the window then runs the call on a worker thread; on this
computer it returns at once and the window calls it directly, so a switch shows in the same event.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mirage_desktop.animation_options import AnimationOptions
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import StageStatus
from mirage_desktop.engine.stats import EngineStats

if TYPE_CHECKING:
    from mirage_desktop.remote.link_stats import LinkStats
    from mirage_desktop.stages.avatar.stage import AvatarStage
    from mirage_desktop.stages.face import FaceDetectionStage


class EngineControl(Protocol):
    #: the engine on this computer: capture, its stages (the model stages, or the one remote stage) and the outputs
    engine: Engine
    #: True when the calls marked "may block" wait for the network
    blocking: bool
    #: where the animation runs, for messages: "this computer", "the remote engine"
    where: str

    @property
    def avatar_stage(self) -> AvatarStage | None:
        """The avatar stage on this computer; None on a remote engine and in builds without it. Never blocks."""
        ...

    @property
    def face_stage(self) -> FaceDetectionStage | None:
        """The face detection stage on this computer; None on a remote engine and in builds without it. Never
        blocks."""
        ...

    def has_stage(self, name: str) -> bool:
        """Whether the model stage ``name`` can be switched. Never blocks."""
        ...

    def stage_enabled(self, name: str) -> bool:
        """Never blocks (a remote engine's switch as it last reported it)."""
        ...

    def stage_status(self, name: str) -> StageStatus:
        """The stage's state and reason. Never blocks (a remote engine's as it last reported them)."""
        ...

    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        """Switch a stage from the next frame; KeyError for a stage not in this build. May block: a remote engine
        switches it there (RemoteControlError names what went wrong), and this computer's settings stay as they
        were; here the settings remember the switch."""
        ...

    def set_animation(self, options: AnimationOptions) -> None:
        """The avatar animates with ``options`` from its next frame (only the options that change travel).
        AnimationOptionError for a bad value. May block: a remote engine gets them at ``PUT /control/animation``
        (RemoteControlError names what went wrong); here it returns at once. Nothing happens without an avatar
        stage."""
        ...

    def models_arrived(self, name: str) -> None:
        """New model files are on disk: reload the stage and switch it on (a remote engine has its own models).
        Never blocks (the stage loads on the engine's threads)."""
        ...

    def recalibrate(self) -> tuple[str, str]:
        """Take the current pose as neutral; (level, message) saying what happened. May block."""
        ...

    def set_avatar(self, path: Path, shown_as: str) -> str:
        """Hand the checked portrait at ``path`` to the avatar stage; a note when the stage cannot take it yet
        (models missing: the choice is kept), else "". AvatarError (naming ``shown_as``) for a portrait the
        engine refuses. Always blocks: face detection here, an upload to a remote engine."""
        ...

    def stats(self) -> EngineStats:
        """The engine's figures; a remote engine's own stages beside the round trip. Never blocks."""
        ...

    def link_stats(self) -> LinkStats | None:
        """The link to a remote engine (the ``remote`` block of ``--stats-json``), as it was when the control
        closed, else now; None on this computer. Never blocks."""
        ...

    def status_text(self) -> str:
        """Where the frames are computed, for the status bar: "CUDA · <GPU>", "CPU", or the round trip to a remote
        engine. Never blocks."""
        ...

    def refusal(self) -> str | None:
        """The message for the user while the engine refuses us (a remote engine's token); None otherwise. Never
        blocks."""
        ...

    def inference_note(self) -> str:
        """Why the avatar's backend and precision cannot be chosen here ("" when they can). Never blocks."""
        ...

    def close(self) -> None:
        """Stop the engine (source and outputs closed) and hang up a remote engine. May block."""
        ...
