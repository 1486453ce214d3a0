"""The two GPU lines: the driver thresholds, the recipes in README, scripts/setup.sh, scripts/gpu_line.sh,
packaging/Dockerfile and requirements.lock spelling the versions of mirage_desktop/doctor/lines.py, the line
scripts/gpu_line.sh picks for each driver nvidia-smi reports, and (PyPI, slow) each line's onnxruntime-gpu resolving
in a clean venv to the CUDA libraries of its own major only.

Only PyPI is checked: torch's cu126/cu130 builds live on download.pytorch.org, whose wheels carry the same nvidia-*
majors by name (``+cu126``: ``nvidia-*-cu12``); that index is out of this test's reach."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from mirage_desktop.doctor.lines import (
    CUDA12,
    CUDA13,
    LINES,
    TORCH_VERSION,
    CudaLine,
    driver_branch,
    driver_range,
    line_for_cuda,
    line_for_driver,
)

ROOT = Path(__file__).resolve().parents[1]
#: the platforms each line is resolved for: Linux x86_64 (its manylinux tags) and Windows
PLATFORMS = {
    "linux": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows": ["win_amd64"],
}
#: NVIDIA's CUDA packages without a -cuNN suffix (CUDA 13 on): their version's major is the CUDA major. Others
#: without the suffix (nvidia-cufft, nvidia-curand) carry their library's own version and say nothing about it.
MAJOR_BY_VERSION = {"nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-nvjitlink", "nvidia-cublas",
                    "nvidia-cuda-cupti", "nvidia-nvtx"}


def text(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def test_driver_thresholds() -> None:
    assert driver_branch("580.65.06") == 580 and driver_branch("") is None and driver_branch("n/a") is None
    assert line_for_driver("524.99") is None
    assert line_for_driver("525.60.13") is CUDA12 and line_for_driver("579.99") is CUDA12
    assert line_for_driver("580.65.06") is CUDA13 and line_for_driver("590.1") is CUDA13
    assert line_for_cuda("12.8") is CUDA12 and line_for_cuda("13.0") is CUDA13 and line_for_cuda("11.8") is None
    assert driver_range(CUDA12) == "R525 to R579" and driver_range(CUDA13) == "R580 or newer"


def test_the_switch_commands() -> None:
    assert CUDA12.commands() == [
        'pip install "torch==2.13.0+cu126" --index-url https://download.pytorch.org/whl/cu126',
        "pip uninstall -y onnxruntime onnxruntime-gpu",
        'pip install "onnxruntime-gpu==1.26.0"',
    ]
    assert CUDA13.switch_fix().endswith("(in a checkout: scripts/setup.sh --cuda 13)")


def test_the_lock_pins_the_cuda_13_lines_onnxruntime_gpu() -> None:
    pins = re.findall(r"^onnxruntime-gpu==([\d.]+) ; sys_platform != 'darwin'", text("requirements.lock"), re.M)
    assert pins == [CUDA13.onnxruntime_gpu]


@pytest.mark.parametrize("line", LINES, ids=lambda line: line.name)
def test_every_recipe_spells_the_lines_versions(line: CudaLine) -> None:
    readme, setup, docker = text("README.md"), text("scripts/setup.sh"), text("packaging/Dockerfile")
    torch_pin = f"torch=={TORCH_VERSION}+{line.torch_tag}"
    assert f'pip install "{torch_pin}" --index-url {line.torch_index}' in readme
    assert f'pip install . "onnxruntime-gpu=={line.onnxruntime_gpu}"' in readme
    assert f"| `{line.torch_index}` |" in readme
    assert f'{line.major}) torch_pin="{torch_pin}"; torch_index=(--index-url {line.torch_index})' in setup
    assert f"{line.major}) tag={line.torch_tag}" in docker and f"ARG TORCH_VERSION={TORCH_VERSION}" in docker
    assert "https://download.pytorch.org/whl/${tag}" in docker
    if line is CUDA12:
        assert f'ort_pin="onnxruntime-gpu=={line.onnxruntime_gpu}"' in setup
        assert f'pip install --no-deps "onnxruntime-gpu=={line.onnxruntime_gpu}"' in docker
    assert f'-ge {line.min_driver} ]' in text("scripts/gpu_line.sh")
    # the CPU line stays as CI installs it: torch 2.13.0 from the default index
    assert f'cpu) torch_pin="torch=={TORCH_VERSION}"; torch_index=()' in setup


def gpu_line(tmp_path: Path, smi: str | None) -> subprocess.CompletedProcess[str]:
    """scripts/gpu_line.sh with ``smi`` as the body of the ``nvidia-smi`` on its PATH (None: no nvidia-smi); the
    PATH holds nothing else, so the script needs no tool but bash."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi_path = bin_dir / "nvidia-smi"
    smi_path.unlink(missing_ok=True)
    if smi is not None:
        smi_path.write_text(f"#!/bin/bash\n{smi}\n")
        smi_path.chmod(0o755)
    bash = subprocess.run(["bash", "-c", "command -v bash"], capture_output=True, text=True).stdout.strip()
    return subprocess.run([bash, str(ROOT / "scripts" / "gpu_line.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=30)


@pytest.mark.parametrize(("smi", "line"), [
    ('echo "580.65.06"', "13"),
    ('for i in {1..64}; do echo "590.44.01"; done', "13"),  # one line per GPU
    ('printf "550.54.15\\r\\n"', "12"),  # as on Windows
    ('echo "550.54.15"', "12"),
    ('echo "525.60.13"', "12"),
    ('echo "470.256.02"', "cpu"),
    ('echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."; exit 9', "cpu"),
    (None, "cpu"),
])
def test_gpu_line_reads_the_driver(tmp_path: Path, smi: str | None, line: str) -> None:
    run = gpu_line(tmp_path, smi)
    assert run.returncode == 0 and run.stdout == f"{line}\n", run.stderr
    assert run.stderr  # says which driver it found


def test_setup_refuses_an_unknown_line() -> None:
    run = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--cuda", "11"], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2 and "--cuda takes 12, 13 or cpu, not '11'" in run.stderr


# -------------------------------------------------------------------------------------------- PyPI resolution
def cuda_majors(report: dict) -> dict[str, int]:
    """nvidia-* package -> the CUDA major it is built for, from its name (-cu12) or, unsuffixed, its version."""
    majors = {}
    for item in report["install"]:
        name, version = item["metadata"]["name"].lower(), item["metadata"]["version"]
        suffix = re.fullmatch(r"(nvidia-.+)-cu(\d+)", name)
        if suffix:
            majors[name] = int(suffix.group(2))
        elif name in MAJOR_BY_VERSION:
            majors[name] = int(version.split(".")[0])
    return majors


@pytest.fixture(scope="module")
def clean_pip(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """pip of a fresh venv (nothing installed but pip), after checking it reaches the package index."""
    env_dir = tmp_path_factory.mktemp("clean-venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    probe = subprocess.run([*pip, "index", "versions", "onnxruntime-gpu"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or CUDA12.onnxruntime_gpu not in probe.stdout:
        pytest.skip(f"the package index is not reachable from here: {probe.stderr.strip()[-300:]}")
    return pip


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("line", LINES, ids=lambda line: line.name)
def test_each_lines_onnxruntime_gpu_resolves_to_its_cuda_major_only(
        clean_pip: list[str], tmp_path: Path, line: CudaLine, platform: str) -> None:
    report_file = tmp_path / "report.json"
    tags = [arg for tag in PLATFORMS[platform] for arg in ("--platform", tag)]
    run = subprocess.run([*clean_pip, "install", "--dry-run", "--quiet", "--report", str(report_file),
                          "--ignore-installed", "--only-binary=:all:", "--python-version", "3.11", *tags,
                          "--target", str(tmp_path / "target"),
                          f"onnxruntime-gpu[cuda,cudnn]=={line.onnxruntime_gpu}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(report_file.read_text())
    installed = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    assert installed["onnxruntime-gpu"] == line.onnxruntime_gpu
    majors = cuda_majors(report)
    assert any(name.startswith("nvidia-cudnn") for name in majors), installed
    assert any(name.startswith("nvidia-cuda-runtime") for name in majors), installed
    assert set(majors.values()) == {line.major}, majors


def test_the_major_reading_of_a_report() -> None:
    """The oracle for :func:`cuda_majors`: names and versions as PyPI published them for 1.26.0 and 1.31.1."""
    def report(*pairs: tuple[str, str]) -> dict:
        return {"install": [{"metadata": {"name": n, "version": v}} for n, v in pairs]}

    assert cuda_majors(report(("nvidia-cudnn-cu12", "9.28.0.42"), ("nvidia-cufft-cu12", "11.4.1.4"),
                              ("numpy", "2.4.6"))) == {"nvidia-cudnn-cu12": 12, "nvidia-cufft-cu12": 12}
    assert cuda_majors(report(("nvidia-cuda-runtime", "13.5.37"), ("nvidia-cufft", "12.5.0.14"),
                              ("nvidia-cudnn-cu13", "9.28.1.4"))) == {"nvidia-cuda-runtime": 13,
                                                                      "nvidia-cudnn-cu13": 13}
    assert sys.version_info >= (3, 11)
