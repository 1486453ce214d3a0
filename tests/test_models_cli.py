"""``mirage-models``: status table, download through the fake hub on 127.0.0.1, verify, path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_helpers import FakeHub, make_entry, payload, hub_serving

from mirage_desktop.models.cli import main
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE, REGISTRY

A = payload(200_000, seed=11)
B = payload(40_000, seed=12)
E_A = make_entry("liveportrait/base_models/motion_extractor.pth", A)
E_B = make_entry(f"scrfd/{DEFAULT_SCRFD_FILE}", B, feature="scrfd")
REG = (E_B, E_A)


def run(argv: list[str], registry: tuple = REG) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, registry=registry, out=out)
    return code, out.getvalue()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    yield from hub_serving(monkeypatch, (E_A, A), (E_B, B))


@pytest.mark.parametrize("argv", [["--status"], ["status"]])
def test_status_on_empty_folder_lists_real_registry_as_missing(tmp_path: Path, argv: list[str]) -> None:
    code, text = run([*argv, "--models-dir", str(tmp_path / "empty")], registry=REGISTRY)
    assert code == 1
    for entry in REGISTRY:
        line = next(line for line in text.splitlines() if entry.local_path in line)
        assert line.startswith("missing"), line
        assert entry.licence in line
    known = sum(e.size or 0 for e in REGISTRY)
    assert known > 500_000_000
    assert f"Total to download: {len(REGISTRY)} file(s), {known / 1e6:.1f} MB" in text


def test_status_total_with_test_registry(tmp_path: Path) -> None:
    code, text = run(["--status", "--models-dir", str(tmp_path)])
    assert code == 1
    assert "Total to download: 2 file(s), 240.0 kB" in text
    assert str(tmp_path) in text


def test_default_models_dir_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRAGE_MODELS_DIR", str(tmp_path / "from-env"))
    code, text = run(["path"])
    assert code == 0 and text.strip() == str(tmp_path / "from-env")


def test_download_shows_licences_then_everything_is_good(hub: FakeHub, tmp_path: Path) -> None:
    code, text = run(["download", "all", "--models-dir", str(tmp_path)])
    assert code == 0, text
    assert text.index("Test licence") < text.index("done     ")
    assert E_A.target(tmp_path).read_bytes() == A and E_B.target(tmp_path).read_bytes() == B
    code, text = run(["--status", "--models-dir", str(tmp_path)])
    assert code == 0 and "Total to download: 0 file(s), 0 B" in text
    code, text = run(["verify", "--models-dir", str(tmp_path)])
    assert code == 0


def test_download_one_group(hub: FakeHub, tmp_path: Path) -> None:
    code, _ = run(["download", "scrfd", "--models-dir", str(tmp_path)])
    assert code == 0
    assert E_B.target(tmp_path).exists() and not E_A.target(tmp_path).exists()
    code, text = run(["status", "--models-dir", str(tmp_path)])
    assert code == 1 and "Total to download: 1 file(s), 200.0 kB" in text


def test_download_failure_says_what_to_do(hub: FakeHub, tmp_path: Path) -> None:
    ghost = make_entry("liveportrait/base_models/warping_module.pth", b"z" * 99)
    code, text = run(["download", "liveportrait", "--models-dir", str(tmp_path)], registry=(ghost,))
    assert code == 1
    assert "FAILED   liveportrait/base_models/warping_module.pth" in text
    assert "place the file by hand" in text


def test_verify_reports_corruption(hub: FakeHub, tmp_path: Path) -> None:
    assert run(["download", "--models-dir", str(tmp_path)])[0] == 0
    E_A.target(tmp_path).write_bytes(b"truncated")
    code, text = run(["verify", "--models-dir", str(tmp_path)])
    assert code == 1
    assert any(line.startswith("corrupt") and E_A.local_path in line for line in text.splitlines())


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "MIRAGE_MODELS_DIR": str(tmp_path / "m")}
    done = subprocess.run(
        [sys.executable, "-m", "mirage_desktop.models", "path"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "m")
