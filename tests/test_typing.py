"""The package ships ``py.typed``, so its annotations are a promise: mypy, with the project's config, finds nothing."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_package_is_marked_typed() -> None:
    assert (REPO / "mirage_desktop" / "py.typed").is_file()
    assert '"py.typed"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")  # shipped as package data


@pytest.mark.slow
def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    # the files, the strictness and the untyped third-party modules come from [tool.mypy] in pyproject.toml; a fresh
    # cache so that a stale one from another checkout or mypy version cannot hide an error
    r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout, r.stdout
