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


def test_corrupt_settings_file_is_kept_as_a_backup_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"fps": 25, "broken')
    with caplog.at_level("WARNING"):
        s = load_settings(path, env={})
    backups = list(tmp_path.glob("settings.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"fps": 25, "broken'  # byte for byte
    assert str(backups[0]) in caplog.text and "corrupt" in caplog.text
    assert any(str(backups[0]) in m for m in s.__dict__["load_problems"])
    save_settings(s, path)  # the next save writes a fresh file and leaves the backup alone
    assert json.loads(path.read_text())["fps"] == 30.0
    assert backups[0].read_text() == '{"fps": 25, "broken'
    load_settings(path, env={})
    assert len(list(tmp_path.glob("settings.json.corrupt-*"))) == 1  # a good file is not moved


def test_a_rejected_value_also_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"fps": "fast", "http_port": 9000}))
    s = load_settings(path, env={})
    assert s.http_port == 9000 and s.fps == 30.0  # the good key is used
    backups = list(tmp_path.glob("settings.json.corrupt-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["fps"] == "fast"


def test_save_is_atomic_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing (disk full) leaves the previous file whole and no temporary file behind."""
    import os

    path = tmp_path / "settings.json"
    s = Settings()
    s.fps = 24.0
    save_settings(s, path)
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    s.fps = 60.0
    with pytest.raises(OSError):
        save_settings(s, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
