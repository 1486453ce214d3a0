"""Session fixtures for the LivePortrait tests: the conformance kit in ../shared and its synthetic weights.

Import the fixtures into a test module (``from liveportrait_fixtures import synth_weights_dir``); the weights
(520 MB) are written once per test run into a temporary folder by the kit's own ``synth_weights.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "liveportrait"


def kit_available() -> bool:
    return (KIT / "golden" / "tolerances.json").is_file() and (KIT / "synth_weights.py").is_file()


@pytest.fixture(scope="session")
def liveportrait_kit() -> Path:
    """The conformance kit folder (README.md, golden/, synth_weights.py)."""
    if not kit_available():
        pytest.skip(f"the LivePortrait conformance kit is not at {KIT} (../shared/liveportrait next to the checkout)")
    return KIT


@pytest.fixture(scope="session")
def synth_module(liveportrait_kit: Path) -> ModuleType:
    """The kit's synth_weights.py, imported from its file (it is not a package)."""
    spec = importlib.util.spec_from_file_location("liveportrait_synth_weights", liveportrait_kit / "synth_weights.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synth_weights_dir(synth_module: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder with the five synthetic checkpoints (salt "", the one golden/ was made with), digests checked."""
    out = tmp_path_factory.mktemp("liveportrait_weights")
    paths = synth_module.write_checkpoints(str(out), salt="", tree=False)
    bad = [name for name, ok in synth_module.verify_files(paths).items() if not ok]
    if bad:
        pytest.fail(f"synthetic weights {bad} differ from the kit's digests (numpy/torch changed the random streams?)")
    return out
