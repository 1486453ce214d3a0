import json
from pathlib import Path

import pytest

from mirage_desktop.config import ConfigError, Settings, load_settings, save_settings


def test_defaults_have_models_off(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "none.json", env={})
    assert s.enable_scrfd is False and s.enable_liveportrait is False
    assert s.device == "auto"
    assert s.models_dir.name == "models"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"enable_scrfd": False, "fps": 25, "models_dir": str(tmp_path / "m")}))
    s = load_settings(path, env={"MIRAGE_ENABLE_SCRFD": "1", "MIRAGE_ENABLE_LIVEPORTRAIT": "off"})
    assert s.enable_scrfd is True
    assert s.enable_liveportrait is False
    assert s.fps == 25.0
    assert s.models_dir == tmp_path / "m"
    assert s.liveportrait_dir() == tmp_path / "m" / "liveportrait"
    assert s.scrfd_dir() == tmp_path / "m" / "scrfd"


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MIRAGE_ENABLE_SCRFD"):
        load_settings(tmp_path / "x.json", env={"MIRAGE_ENABLE_SCRFD": "maybe"})


def test_corrupt_settings_file_falls_back_to_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    assert load_settings(path, env={}).fps == 30.0


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "settings.json"
    s = Settings(enable_scrfd=True, avatar=tmp_path / "a.png", ui={"geometry": "abc"})
    s.ensure_token()
    save_settings(s, path)
    again = load_settings(path, env={})
    assert again.enable_scrfd is True
    assert again.avatar == tmp_path / "a.png"
    assert again.ui == {"geometry": "abc"}
    assert again.token == s.token and len(s.token) >= 24


def test_run_only_overrides_are_not_saved_unless_changed_again(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    s = Settings(source="0", fps=30.0)
    s.override("source", "clip.mp4")
    s.override("fps", 15.0)
    assert s.source == "clip.mp4" and s.fps == 15.0
    s.fps = 25.0  # the user changed it in the window: that is a real choice
    save_settings(s, path)
    again = load_settings(path, env={})
    assert again.source == "0"
    assert again.fps == 25.0
