"""The models check against a local model hub (the real downloader fetches what the fix says to fetch, then the check
passes), the settings check against settings files and ``MIRAGE_*`` variables, and the storage check against folders
that can and cannot be written. Nothing the user has may change: the hash cache and bad settings files stay as
they were."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hub_helpers import FakeHub, make_entry, payload, hub_serving

from mirage_desktop.config import Settings
from mirage_desktop.doctor import files
from mirage_desktop.doctor.check import FAIL, OK, WARN
from mirage_desktop.doctor.models import models_check
from mirage_desktop.models.download import download
from mirage_desktop.models.integrity import HASH_CACHE_FILE
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE, download_hint

DET, BIG = payload(3000, 1), payload(70_000, 2)
E_DET = make_entry(f"scrfd/{DEFAULT_SCRFD_FILE}", DET, feature="scrfd")
E_BIG = make_entry("liveportrait/base_models/warping_module.pth", BIG)
REG = (E_DET, E_BIG)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    yield from hub_serving(monkeypatch, (E_DET, DET), (E_BIG, BIG))


def test_missing_models_fail_and_the_fix_makes_them_pass(hub: FakeHub, tmp_path: Path) -> None:
    models, cache = tmp_path / "models", tmp_path / "cache"
    before = models_check(models, cache, REG)
    assert before.status == FAIL and "all 2 registry files missing" in before.detail
    assert before.fix == f"{download_hint('all')} (with --models-dir {models})"
    assert download("all", models, registry=REG, backoff=0.01).ok  # what the fix runs
    after = models_check(models, cache, REG)
    assert after.status == OK and "2 files (scrfd, liveportrait" in after.detail
    assert "sizes and sha256 match the registry's pins" in after.detail
    assert "no exported networks" in after.detail


def test_a_corrupt_file_is_named_and_the_hash_cache_is_not_written(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert download("all", models, registry=REG, backoff=0.01).ok
    cache_file = models / HASH_CACHE_FILE
    cached = cache_file.read_bytes() if cache_file.exists() else None
    target = E_BIG.target(models)
    target.write_bytes(b"x" * len(BIG))  # same size, other bytes
    check = models_check(models, tmp_path / "cache", REG)
    assert check.status == FAIL and "corrupt: liveportrait/base_models/warping_module.pth (sha256" in check.detail
    assert check.fix.startswith(download_hint("liveportrait"))
    assert (cache_file.read_bytes() if cache_file.exists() else None) == cached  # the doctor only reads it


def test_exported_networks_and_a_custom_scrfd_model(hub: FakeHub, tmp_path: Path) -> None:
    models, cache = tmp_path / "models", tmp_path / "cache"
    assert download("liveportrait", models, registry=REG, backoff=0.01).ok
    entry = cache / "liveportrait-onnx" / "W-0123abcd"
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(b"\0" * 5000)
    custom = tmp_path / "my_scrfd.onnx"
    check = models_check(models, cache, REG, scrfd_model=custom)
    assert check.status == FAIL and "SCRFD from the setting scrfd_model" in check.detail
    assert check.fix == f"put the SCRFD model at {custom}, or remove the scrfd_model setting"
    custom.write_bytes(DET)
    check = models_check(models, cache, REG, scrfd_model=custom)
    assert check.status == OK and "1 exported network(s) (5.0 kB)" in check.detail


# ------------------------------------------------------------------------------------------------------ settings
def test_settings_file_missing_read_and_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings, check = files.load(path, {})
    assert check.status == OK and "No settings file" in check.detail and settings.device == "auto"
    path.write_text(json.dumps({"device": "cpu", "fps": 25}))
    settings, check = files.load(path, {"MIRAGE_MODELS_DIR": str(tmp_path / "m")})
    assert check.status == OK and settings.device == "cpu" and settings.models_dir == tmp_path / "m"
    assert "from the environment: MIRAGE_MODELS_DIR" in check.detail
    path.write_text("{not json")
    _, check = files.load(path, {})
    assert check.status == WARN and "corrupt" in check.detail and check.fix.startswith(f"correct {path} by hand")
    assert path.read_text() == "{not json" and [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_a_bad_value_is_reported_without_moving_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"fps": "fast", "device": "cpu"}))
    settings, check = files.load(path, {})
    assert check.status == WARN and "Invalid value for fps" in check.detail
    assert settings.device == "cpu"  # the good entries still count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no .corrupt-<time> copy


def test_a_variable_mirage_refuses_fails_and_names_itself(tmp_path: Path) -> None:
    settings, check = files.load(tmp_path / "settings.json", {"MIRAGE_HTTP_PORT": "eighty", "MIRAGE_DEVICE": "cpu"})
    assert check.status == FAIL and "MIRAGE_HTTP_PORT" in check.detail
    assert check.fix == "unset MIRAGE_HTTP_PORT or give it a valid value"
    assert settings.device == "cpu"  # the other variables still apply


def test_an_unreadable_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{}")
    real_read = Path.read_text

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    _, check = files.load(path, {})
    assert check.status == WARN and "Cannot read" in check.detail
    assert check.fix == f"make {path} readable for this user (chmod u+rw {path})"


# ------------------------------------------------------------------------------------------------------- storage
def _settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", log_dir=tmp_path / "logs")


def test_folders_to_be_created_are_fine_and_nothing_is_left_behind(tmp_path: Path) -> None:
    check = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "cfg" / "settings.json",
                                (E_DET, E_BIG))
    assert check.status == OK and f"models {tmp_path / 'models'} to be created under {tmp_path}" in check.detail
    assert "73.0 kB to download" in check.detail
    (tmp_path / "models").mkdir()
    check = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "cfg" / "settings.json", REG)
    assert f"models {tmp_path / 'models'} writable" in check.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"] and not any((tmp_path / "models").iterdir())


def test_a_models_folder_that_cannot_be_written_blocks_the_downloads(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("a file where the folder should be")
    check = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "settings.json", REG)
    assert check.status == FAIL and "models" in check.detail and "not a folder" in check.detail
    assert check.fix.startswith(f"make {tmp_path / 'models'} writable for this user, or choose another folder")


def test_a_cache_that_cannot_be_written_and_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache").write_text("a file")
    check = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "settings.json", REG)
    assert check.status == WARN
    assert check.fix == f"make {tmp_path / 'cache'} writable or point MIRAGE_CACHE_DIR elsewhere"
    (tmp_path / "cache").unlink()
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=0, free=10_000))
    full = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "settings.json", REG)
    assert full.status == FAIL and full.fix.startswith("free 63.0 kB on the disk of")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=0, free=200_000))
    tight = files.storage_check(_settings(tmp_path), tmp_path / "cache", tmp_path / "settings.json", REG)
    assert tight.status == WARN and "use --backend torch" in tight.fix
