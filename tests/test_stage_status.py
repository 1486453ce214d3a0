"""Structured stage status: state, reason for people, and the model group whose download fixes it.

The oracles are independent of the reason's wording: the registry's own ``download_hint`` and model groups, the
stage specs, and the engine's own failure counter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_helpers import FailingStage, NumberedSource
from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import Stage, StageStatus, StageUnavailable
from mirage_desktop.models.registry import GROUPS, download_hint
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.stages.factory import build_stages, parse_enable
from mirage_desktop.stages.specs import LIVEPORTRAIT, SCRFD, STAGE_NAMES, STAGE_SPECS, stage_spec


class MissingModelStage(Stage):
    name = "needy"
    label = "Needy"

    def __init__(self, group: str | None, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.group = group

    def prepare(self) -> None:
        raise StageUnavailable("the weights are not there", self.group)

    def process(self, frame: Frame) -> Frame:
        return frame


class BrokenStage(MissingModelStage):
    def prepare(self) -> None:
        raise OSError("disk on fire")


def test_switching_goes_off_loading_ready_off() -> None:
    stage = FailingStage(enabled=False)
    assert stage.status() == StageStatus("off", "off")
    stage.set_enabled(True)
    assert stage.status().state == "loading" and stage.status().reason == ""
    assert stage.ensure_ready(block=True)
    assert stage.status() == StageStatus("ready", "")
    stage.set_enabled(False)
    assert stage.status() == StageStatus("off", "off")


def test_unavailable_carries_the_model_group_and_failed_does_not() -> None:
    needy = MissingModelStage("scrfd")
    assert not needy.ensure_ready(block=True)
    assert needy.status() == StageStatus("unavailable", "the weights are not there", "scrfd")
    needy.set_enabled(False)
    assert needy.status().state == "off" and needy.status().model_group is None
    broken = BrokenStage(None)
    assert not broken.ensure_ready(block=True)
    status = broken.status()
    assert status.state == "failed" and status.model_group is None and "disk on fire" in status.reason


def test_a_plain_reason_forgets_the_model_group() -> None:
    stage = MissingModelStage(None)
    stage.set_reason("needs face detection", "scrfd")
    assert stage.status().model_group == "scrfd"
    stage.reason = "no face in view"
    assert stage.status() == StageStatus("loading", "no face in view", None)


def test_engine_failures_read_as_failed_and_switching_on_again_clears_them() -> None:
    failing = FailingStage()
    engine = Engine(NumberedSource(fps=100, count=10), [failing], every_frame=True)
    engine.start()
    assert engine.wait(10)
    engine.stop()
    assert not failing.enabled  # the engine switched it off after its failures
    assert failing.status().state == "failed" and failing.status().reason == failing.reason
    failing.set_enabled(True)
    assert failing.status() == StageStatus("ready", "")
    failing.set_enabled(False)
    assert failing.status().state == "off"


def test_face_detection_without_a_model_asks_for_its_group(tmp_path: Path) -> None:
    stage = FaceDetectionStage(Settings(models_dir=tmp_path, enable_scrfd=True, device="cpu"))
    assert not stage.ensure_ready(block=True)
    status = stage.status()
    assert status.state == "unavailable" and status.model_group == SCRFD.model_group
    assert download_hint("scrfd") in status.reason
    with pytest.raises(StageUnavailable) as info:
        stage.detect_still(__import__("numpy").zeros((8, 8, 3), "uint8"))
    assert info.value.model_group == "scrfd"


@pytest.mark.slow
def test_animate_without_face_detection_asks_for_the_scrfd_group(tmp_path: Path, synthetic_models_dir: Path) -> None:
    """The LivePortrait weights are there but no SCRFD model: the group to download is face detection's."""
    from mirage_desktop.stages.avatar.stage import AvatarStage

    (tmp_path / "liveportrait").symlink_to(synthetic_models_dir / "liveportrait", target_is_directory=True)
    settings = Settings(models_dir=tmp_path, enable_liveportrait=True, device="cpu", output_width=320,
                        output_height=240, liveportrait_backend="torch")  # auto would measure for minutes first
    stage = AvatarStage(settings, FaceDetectionStage(settings))
    assert not stage.ensure_ready(block=True)
    status = stage.status()
    assert status.state == "unavailable" and status.model_group == "scrfd"
    assert download_hint("scrfd") in status.reason


def test_missing_liveportrait_weights_ask_for_their_group(tmp_path: Path) -> None:
    from mirage_desktop.stages.avatar.stage import AvatarStage

    settings = Settings(models_dir=tmp_path, enable_liveportrait=True, device="cpu")
    stage = AvatarStage(settings, FaceDetectionStage(settings))
    assert not stage.ensure_ready(block=True)
    assert stage.status().state == "unavailable" and stage.status().model_group == LIVEPORTRAIT.model_group


def test_the_stage_specs_are_what_the_stages_enable_and_the_registry_call_them() -> None:
    settings = Settings(device="cpu")
    stages = build_stages(settings)
    assert [(s.name, s.label) for s in stages] == [(spec.name, spec.label) for spec in STAGE_SPECS]
    assert parse_enable(",".join(STAGE_NAMES)) == set(STAGE_NAMES)
    for spec in STAGE_SPECS:
        assert spec.model_group in GROUPS
        assert isinstance(getattr(settings, spec.setting), bool)  # a real Settings field
        assert stage_spec(spec.name) is spec
    assert [spec.shortcut for spec in STAGE_SPECS] == ["Ctrl+1", "Ctrl+2"]
    with pytest.raises(KeyError, match="scrfd, liveportrait"):
        stage_spec("warpdrive")
