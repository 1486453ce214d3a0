"""The engine knows nothing of Qt: checked by import-linter and by importing it in a clean interpreter."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed in this environment")
    r = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KEPT" in r.stdout


def test_engine_import_pulls_in_no_qt() -> None:
    code = (
        "import sys, mirage_desktop.engine.pipeline, mirage_desktop.stages.factory, mirage_desktop.engine.sources, mirage_desktop.liveportrait.runner, mirage_desktop.vision.scrfd\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'mirage_desktop.ui'))]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
