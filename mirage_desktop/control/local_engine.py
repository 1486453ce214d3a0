"""The model stages on this computer behind :class:`~.engine_control.EngineControl`: every call returns at once
except :meth:`LocalEngine.set_avatar` (face detection), and the settings remember each stage switch."""

from __future__ import annotations

import sys
from pathlib import Path

from mirage_desktop.animation_options import AnimationOptions
from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.engine.stage import StageStatus, StageUnavailable
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.remote.link_stats import LinkStats
from mirage_desktop.stages.avatar.stage import AvatarStage
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.stages.factory import build_engine
from mirage_desktop.stages.specs import LIVEPORTRAIT, SCRFD, STAGE_SPECS, stage_spec


def device_description(device: str) -> str:
    """"CUDA · <GPU name>" or "CPU"; reads torch only if it is already imported."""
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            return f"CUDA · {torch.cuda.get_device_name(index)}" if torch is not None else "CUDA"
        except Exception:  # noqa: BLE001 - driver hiccup: the plain word is still true
            return "CUDA"
    return "CPU"


class LocalEngine:
    """The engine the settings describe, with its stages switched and the avatar animated as the settings say."""

    blocking = False
    where = "this computer"

    def __init__(self, settings: Settings, source: Source, *, every_frame: bool = False,
                 max_frames: int | None = None) -> None:
        self.settings = settings
        self.engine: Engine = build_engine(settings, source, every_frame=every_frame, max_frames=max_frames)
        for spec in STAGE_SPECS:
            if self.has_stage(spec.name):
                self.engine.set_stage_enabled(spec.name, bool(getattr(settings, spec.setting)))
        self.set_animation(settings.animation)

    # ------------------------------------------------------------------------------------------------ stages
    @property
    def avatar_stage(self) -> AvatarStage | None:
        if not self.has_stage(LIVEPORTRAIT.name):
            return None
        stage = self.engine.stage(LIVEPORTRAIT.name)
        return stage if isinstance(stage, AvatarStage) else None

    @property
    def face_stage(self) -> FaceDetectionStage | None:
        if not self.has_stage(SCRFD.name):
            return None
        stage = self.engine.stage(SCRFD.name)
        return stage if isinstance(stage, FaceDetectionStage) else None

    def has_stage(self, name: str) -> bool:
        return any(stage.name == name for stage in self.engine.stages)

    def stage_enabled(self, name: str) -> bool:
        return self.engine.stage(name).enabled

    def stage_status(self, name: str) -> StageStatus:
        return self.engine.stage(name).status()

    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        """Switch it and record it in its setting (returns at once)."""
        self.engine.set_stage_enabled(name, enabled)
        setattr(self.settings, stage_spec(name).setting, bool(enabled))

    def set_animation(self, options: AnimationOptions) -> None:
        """Returns at once (some options, like the motion mode, recalibrate on the next frame)."""
        stage = self.avatar_stage
        if stage is None:
            return
        changes = options.changes_from(stage.options)
        if changes:
            stage.set_options(**changes)

    def models_arrived(self, name: str) -> None:
        if self.has_stage(name):
            self.engine.stage(name).reset()
            self.set_stage_enabled(name, True)

    def recalibrate(self) -> tuple[str, str]:
        """Returns at once (the stage takes the pose on its next frame)."""
        stage = self.avatar_stage
        if stage is None:
            return "warning", f"Recalibrate needs {LIVEPORTRAIT.label}, which is not available in this build."
        if not stage.enabled:
            return "info", (f"Switch on {LIVEPORTRAIT.label} ({LIVEPORTRAIT.shortcut}) first: Recalibrate sets its "
                            "neutral pose.")
        try:
            stage.recalibrate()
        except Exception as exc:  # noqa: BLE001 - told to the user; the video goes on
            return "error", f"Recalibrate failed: {exc}"
        return "info", "Recalibrated: your current pose is the neutral pose now."

    def set_avatar(self, path: Path, shown_as: str) -> str:
        stage = self.avatar_stage
        if stage is None:
            return ""
        try:
            stage.set_avatar(path)
        except StageUnavailable as exc:
            return str(exc)
        return ""

    # ---------------------------------------------------------------------------------------------- figures
    def stats(self) -> EngineStats:
        return self.engine.stats()

    def link_stats(self) -> LinkStats | None:
        return None

    def status_text(self) -> str:
        return device_description(self.engine.device)

    def refusal(self) -> str | None:
        return None

    def inference_note(self) -> str:
        return "" if self.avatar_stage is not None else "Animate is not available in this build."

    # --------------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Waits for the frames in flight (see :meth:`Engine.stop`)."""
        self.engine.stop()
