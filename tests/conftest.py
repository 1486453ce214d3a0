"""Shared test setup: isolated settings/log folders and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user's settings, logs or models."""
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
