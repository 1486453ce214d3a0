"""Shared test setup: isolated settings/log folders and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liveportrait_fixtures import liveportrait_kit, synth_module, synth_weights_dir  # noqa: F401  (session fixtures)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One user cache dir for the whole run: LivePortrait's ONNX exports and backend measurements are made once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, _session_cache_dir: Path
) -> None:
    """No test reads or writes the real user's settings, logs, models or cache."""
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(_session_cache_dir))
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MIRAGE_SETTINGS", str(home / "settings.json"))
    monkeypatch.setenv("MIRAGE_LOG_DIR", str(home / "logs"))
    monkeypatch.setenv("MIRAGE_MODELS_DIR", str(home / "models"))
    for var in ("MIRAGE_ENABLE_SCRFD", "MIRAGE_ENABLE_LIVEPORTRAIT", "MIRAGE_TOKEN", "MIRAGE_SOURCE", "MIRAGE_AVATAR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared test assets) is not next to the checkout")
    return SHARED


os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def synthetic_models_dir(synth_weights_dir: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory in the app's layout: the kit's synthetic LivePortrait checkpoints (written once per test
    run, linked here into the official tree), the geometry kit's stand-in landmark models (under their registry
    paths) and the real SCRFD 2.5g model."""
    import shutil

    from mirage_desktop.liveportrait.geometry_conformance import load_generator
    from mirage_desktop.models.registry import landmark_paths

    models = tmp_path_factory.mktemp("models")
    tree = {"stitching_retargeting_module.pth": "retargeting_models"}
    for weights in synth_weights_dir.glob("*.pth"):
        target = models / "liveportrait" / tree.get(weights.name, "base_models") / weights.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(weights)
    (models / "scrfd").mkdir()
    shutil.copy(shared_dir / "models" / "scrfd_2.5g.onnx", models / "scrfd" / "scrfd_2.5g_bnkps.onnx")
    # deterministic, face-shaped but not face-accurate points: tests assert on geometry, not on where eyes are
    written = load_generator(shared_dir / "liveportrait" / "geometry").write_models(
        str(tmp_path_factory.mktemp("landmarks")), salt="")
    for name, target in landmark_paths(models).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(written[name], target)
    return models
