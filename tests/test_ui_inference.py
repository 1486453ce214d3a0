"""The window's backend/precision choosers: remembered, handed to the avatar stage, and the running line."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import pytest

pytest.importorskip("pytestqt")

from mirage_desktop.ui.inference import describe_backends
from ui_helpers import open_window, saved_settings, window_settings


def test_running_line_groups_the_networks_by_engine() -> None:
    running = {"F": "onnxruntime fp32", "M": "onnxruntime fp32", "W": "torch fp32", "G": "onnxruntime fp32",
               "stitching": "onnxruntime fp32", "lip": "torch fp32", "eye": "torch fp32"}
    assert describe_backends(running) == "ONNX Runtime: F M G · PyTorch: W · fp32"
    mixed = {"F": "torch fp32", "M": "torch fp32", "W": "torch bf16", "G": "torch bf16"}
    assert describe_backends(mixed) == "PyTorch: F M W G · fp32/bf16"
    assert describe_backends(None) == "" and describe_backends({}) == ""


def test_choosing_a_backend_is_remembered_and_reloads_the_avatar(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, window_settings(tmp_path), painted=2)
    stage = window.session.avatar_stage
    if stage is None:
        pytest.skip("the avatar stage is not in this build")
    chooser = window.controls.inference
    assert chooser.isEnabled()
    assert chooser.value() == (window.settings.liveportrait_backend, window.settings.liveportrait_precision)
    released: list[bool] = []
    original = stage.release
    stage.release = lambda: (released.append(True), original())[1]  # type: ignore[method-assign]
    chooser.backend.setCurrentIndex(chooser.backend.findData("onnxruntime"))
    chooser.backend.activated.emit(chooser.backend.currentIndex())
    qtbot.waitUntil(lambda: saved_settings().get("liveportrait_backend") == "onnxruntime", timeout=20_000)
    assert released  # the stage forgot its networks: the next frame builds them with the new choice
    assert stage.settings.liveportrait_backend == "onnxruntime"
    chooser.precision.setCurrentIndex(chooser.precision.findData("fp32"))
    chooser.precision.activated.emit(chooser.precision.currentIndex())
    qtbot.waitUntil(lambda: saved_settings().get("liveportrait_precision") == "fp32", timeout=20_000)
    window.close()

    again = open_window(qtbot, window_settings(tmp_path), painted=2)
    assert again.controls.inference.value() == ("onnxruntime", "fp32")
    again.close()


def test_a_bad_choice_is_refused_with_the_choices_named(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, window_settings(tmp_path), painted=2)
    with pytest.raises(ValueError, match="auto, torch, onnxruntime"):
        window.session.set_inference("tensorrt-please", "fp32")
    window.close()
