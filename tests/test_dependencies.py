"""Every third-party module mirage_desktop imports (anywhere, also inside functions) is a declared dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_level_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "mirage_desktop").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "mirage_desktop" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_module_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normalise(re.split(r"[ ;<>=!~\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    owners = packages_distributions()  # the installed distributions' own record of which module each provides
    missing = []
    for module, where in _imported_top_level_modules().items():
        dists = {_normalise(d) for d in owners.get(module, [])}
        if not dists & declared:
            missing.append(f"{module} (imported in {where}, provided by {sorted(dists) or 'nothing installed'})")
    assert not missing, "declare these in pyproject.toml [project] dependencies: " + "; ".join(missing)


def test_no_extra_but_reference_brings_the_cpu_onnxruntime_over_the_gpu_one() -> None:
    """insightface (2.1 on PyPI: Requires-Dist onnxruntime) installs the CPU package, whose module replaces
    onnxruntime-gpu's: after `pip install .[bench]` only the CPU and Azure providers were left. It lives in its own
    `reference` extra; every other extra stays off it and off the CPU package (outside macOS)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(_normalise(spec).startswith("insightface") for spec in extras["reference"])
    for name, specs in extras.items():
        if name == "reference":
            continue
        for spec in specs:
            dist = _normalise(re.split(r"[ ;<>=!~\[]", spec, maxsplit=1)[0])
            assert dist != "insightface", f"{name}: {spec} pulls the CPU onnxruntime; keep it in 'reference'"
            assert dist != "onnxruntime" or "darwin" in spec, f"{name}: {spec} replaces onnxruntime-gpu"
