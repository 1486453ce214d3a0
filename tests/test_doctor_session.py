"""No silent fallback: on a machine whose NVIDIA GPU is there but unused, the session says so at start with the
doctor's fix, to its listeners (the window's banner, headless stderr) and in /health. The GPU is NVML's answer
(a fake ``pynvml`` module: the boundary); torch and ONNX Runtime are this machine's real ones (a CPU torch, an
onnxruntime-gpu whose CUDA provider cannot load without the CUDA libraries)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from doctor_helpers import FakeNvml, no_driver

from mirage_desktop.config import Settings
from mirage_desktop.doctor.check import WARN
from mirage_desktop.doctor.lines import CUDA12, CUDA13
from mirage_desktop.doctor.run import gpu_warnings
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.session import Session

pytestmark = pytest.mark.skipif(torch.version.cuda is not None, reason="needs a CPU torch: the unused-GPU case")


def settings(tmp_path: Path, device: str = "auto") -> Settings:
    return Settings(output_width=160, output_height=120, fps=15.0, device=device, http_port=0,
                    models_dir=tmp_path / "models", avatar_dir=tmp_path / "avatars")


def test_an_unused_gpu_gives_the_torch_and_onnxruntime_fixes(tmp_path: Path) -> None:
    found = gpu_warnings(settings(tmp_path), nvml=FakeNvml(driver="580.65.06"))
    by_name = {c.name: c for c in found}
    assert "gpu" not in by_name  # the driver itself is fine
    assert by_name["torch"].status == WARN and by_name["torch"].fix == CUDA13.switch_fix()
    ort = by_name.get("onnxruntime")
    if ort is not None:  # this onnxruntime-gpu's CUDA provider does not load here
        assert ort.status == WARN and "although the NVIDIA GeForce RTX 4090 is here" in ort.detail
    on_550 = {c.name: c for c in gpu_warnings(settings(tmp_path), nvml=FakeNvml(driver="550.54.15", cuda=12040))}
    assert on_550["torch"].fix == CUDA12.switch_fix()


def test_nothing_to_say_without_a_gpu_or_when_the_cpu_is_chosen(tmp_path: Path) -> None:
    assert gpu_warnings(settings(tmp_path), nvml=no_driver()) == []
    assert gpu_warnings(settings(tmp_path, "cpu"), nvml=FakeNvml()) == []


def test_a_driver_too_old_is_said_too(tmp_path: Path) -> None:
    found = {c.name: c for c in gpu_warnings(settings(tmp_path), nvml=FakeNvml(driver="470.256.02", cuda=11040))}
    assert found["gpu"].status == WARN and "older than R525" in found["gpu"].detail


def health(session: Session) -> dict:
    assert session.server is not None
    with urllib.request.urlopen(session.server.url + "health", timeout=10) as resp:
        return json.loads(resp.read())


def test_the_session_says_it_at_start_and_health_carries_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(driver="580.65.06"))  # NVML of a GPU machine
    session = Session(settings(tmp_path), DemoSource(160, 120, 15.0, paced=False))
    said: list[tuple[str, str]] = []
    session.engine.add_listener(lambda level, text: said.append((level, text)))
    try:
        session.start()
        warnings = [text for level, text in said if level == "warning"]
        assert any(text.endswith(f"Fix: {CUDA13.switch_fix()}") and "is a CPU build" in text for text in warnings)
        session.start_http()
        body = health(session)
        assert [c.to_json() for c in session.setup_warnings or []] == body["setup_warnings"]
        torch_entry = next(c for c in body["setup_warnings"] if c["name"] == "torch")
        assert torch_entry["status"] == "warn" and torch_entry["fix"] == CUDA13.switch_fix()
    finally:
        session.close()


def test_a_machine_without_a_gpu_starts_silently(tmp_path: Path) -> None:
    session = Session(settings(tmp_path), DemoSource(160, 120, 15.0, paced=False))
    said: list[tuple[str, str]] = []
    session.engine.add_listener(lambda level, text: said.append((level, text)))
    try:
        session.start()
        session.start_http()
        if not gpu_warnings(session.settings):  # this machine (no NVIDIA driver here)
            assert health(session)["setup_warnings"] == [] and not [t for lvl, t in said if "Fix:" in t]
    finally:
        session.close()
