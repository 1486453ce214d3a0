"""The GPU checks against NVML's answers (faked at pynvml's surface, with its real error classes) and torch's own
report (the real torch of this machine where it can tell, its facts where it cannot); each problem's fix asserted."""

from __future__ import annotations

import pynvml
import pytest
import torch
from doctor_helpers import FakeGpu, FakeNvml, no_driver

from mirage_desktop.doctor.check import FAIL, OK, SKIP, WARN, Check
from mirage_desktop.doctor.gpu import NvidiaProbe, gpu_check, probe
from mirage_desktop.doctor.lines import CUDA12, CUDA13, driver_advice
from mirage_desktop.doctor.torch_build import TorchFacts, torch_check, torch_facts

CUDA12_FIX = ('pip install "torch==2.13.0+cu126" --index-url https://download.pytorch.org/whl/cu126 && '
              'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "onnxruntime-gpu==1.26.0"')
CUDA13_FIX = ('pip install "torch==2.13.0+cu130" --index-url https://download.pytorch.org/whl/cu130 && '
              'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "onnxruntime-gpu==1.31.1"')


def test_a_check_refuses_a_problem_without_a_fix() -> None:
    with pytest.raises(ValueError, match="without a fix"):
        Check("gpu", WARN, "something is wrong")
    with pytest.raises(ValueError, match="not one of"):
        Check("gpu", "bad", "x")


def test_probe_reads_driver_cuda_and_gpus_and_shuts_nvml_down() -> None:
    nvml = FakeNvml(driver="550.54.15", cuda=12040, gpus=[FakeGpu("NVIDIA A10G", 23 * 2**30, (8, 6))])
    found = probe(nvml)
    assert found.driver == "550.54.15" and found.cuda == "12.4" and found.usable and found.present
    assert found.gpus[0].name == "NVIDIA A10G" and found.gpus[0].capability == (8, 6)
    assert nvml.shut_down


def test_probe_on_this_machine_says_why_there_is_no_gpu() -> None:
    """The real pynvml: on this CPU machine NVML's library is absent; on a GPU machine the driver answers."""
    found = probe()
    if found.driver is None:
        assert found.error and not found.usable
    else:
        assert found.gpus and found.present


def test_no_driver_says_so_and_what_a_gpu_would_give() -> None:
    check = gpu_check(probe(no_driver()))
    assert check.status == WARN and "No NVIDIA driver found" in check.detail
    assert "20 to 50 ms a frame" in check.detail  # what a GPU gives
    assert "R580 or newer" in check.fix and "R525" in check.fix and "mirage --remote https://HOST:8765" in check.fix
    assert not probe(no_driver()).present


@pytest.mark.parametrize(("code", "fix"), [
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "installed but not loaded: reboot"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "was updated but the old one still runs: reboot"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "permissions of /dev/nvidia*"),
    (pynvml.NVML_ERROR_UNKNOWN, "run `nvidia-smi`"),
])
def test_a_driver_in_trouble_names_its_fix(code: int, fix: str) -> None:
    found = probe(FakeNvml(init_error=code))
    assert found.present and not found.usable  # a GPU is there: the session must say so
    check = gpu_check(found)
    assert check.status == WARN and fix in check.fix


def test_each_driver_gets_its_line() -> None:
    assert gpu_check(probe(FakeNvml(driver="580.65.06"))).status == OK
    assert "runs the CUDA 13 line (and CUDA 12)" in gpu_check(probe(FakeNvml(driver="580.65.06"))).detail
    check = gpu_check(probe(FakeNvml(driver="550.54.15", cuda=12040)))
    assert check.status == OK and "R525 to R579" in check.detail and "runs the CUDA 12 line" in check.detail
    old = gpu_check(probe(FakeNvml(driver="470.256.02", cuda=11040)))
    assert old.status == WARN and "older than R525" in old.detail and old.fix == driver_advice()


def test_blackwell_on_a_cuda_12_driver_needs_the_newer_driver_and_line() -> None:
    check = gpu_check(probe(FakeNvml(driver="575.51.02", cuda=12090,
                                     gpus=[FakeGpu("NVIDIA GeForce RTX 5090", 32 * 2**30, (12, 0))])))
    assert check.status == WARN and "RTX 5090 needs the CUDA 13 line" in check.detail
    assert check.fix == f"update the NVIDIA driver to R580 or newer, then {CUDA13.switch_fix()}"
    assert CUDA13_FIX in check.fix


def test_a_driver_without_gpus_and_a_remote_engine() -> None:
    check = gpu_check(probe(FakeNvml(gpus=[])))
    assert check.status == WARN and "--gpus all" in check.fix
    assert gpu_check(probe(no_driver()), remote=True).status == SKIP


def test_torch_on_this_machine() -> None:
    """The real torch: a CPU build here is fine without a GPU; a CUDA build on a GPU machine runs the kernel."""
    facts = torch_facts()
    assert facts.version == torch.__version__ and facts.cuda == torch.version.cuda
    found = probe()
    check = torch_check(facts, found)
    if not found.usable:
        assert check.status == OK and "no NVIDIA GPU" in check.detail
    elif facts.available:
        assert facts.kernel_error is None and check.status == OK


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs this machine's CPU torch")
def test_a_cpu_torch_on_a_gpu_machine_is_a_silent_fallback_with_the_switch_commands() -> None:
    facts = torch_facts()  # the real CPU build
    check = torch_check(facts, probe(FakeNvml(driver="580.65.06")))
    assert check.status == WARN and "is a CPU build: the NVIDIA GeForce RTX 4090 is unused" in check.detail
    assert check.fix == CUDA13.switch_fix() and CUDA13_FIX in check.fix and "scripts/setup.sh --cuda 13" in check.fix
    on_550 = torch_check(facts, probe(FakeNvml(driver="550.54.15", cuda=12040)))
    assert on_550.fix == CUDA12.switch_fix() and CUDA12_FIX in on_550.fix


def test_a_cuda_13_torch_on_a_cuda_12_driver_switches_to_the_cuda_12_line() -> None:
    facts = TorchFacts("2.13.0+cu130", "13.0", False, error="The NVIDIA driver on your system is too old")
    check = torch_check(facts, probe(FakeNvml(driver="550.54.15", cuda=12040)))
    assert check.status == WARN and "cannot run" in check.detail and "runs CUDA 12" in check.detail
    assert "driver on your system is too old" in check.detail and CUDA12_FIX in check.fix


def test_a_torch_that_does_not_see_or_cannot_run_on_the_gpu() -> None:
    on_580 = probe(FakeNvml(driver="580.65.06"))
    blind = torch_check(TorchFacts("2.13.0+cu130", "13.0", False, error="no CUDA-capable device"), on_580)
    assert blind.status == WARN and "no CUDA-capable device" in blind.detail and CUDA13_FIX in blind.fix
    kernel = torch_check(TorchFacts("2.13.0+cu126", "12.6", True, "NVIDIA GeForce RTX 5090",
                                    kernel_error="no kernel image is available for execution on the device"), on_580)
    assert kernel.status == WARN and "no kernel image" in kernel.detail and CUDA13_FIX in kernel.fix


def test_torch_that_works_and_torch_that_does_not_import() -> None:
    on_580 = probe(FakeNvml(driver="580.65.06"))
    good = torch_check(TorchFacts("2.13.0+cu130", "13.0", True, "NVIDIA H100"), on_580)
    assert good.status == OK and "runs a test kernel on NVIDIA H100" in good.detail
    older = torch_check(TorchFacts("2.13.0+cu126", "12.6", True, "NVIDIA H100"), on_580)
    assert older.status == OK and "also runs the CUDA 13 line" in older.detail
    broken = torch_check(TorchFacts(None, error="ImportError: libcudnn.so.9"), on_580)
    assert broken.status == FAIL and CUDA13_FIX in broken.fix
    broken_cpu = torch_check(TorchFacts(None, error="ImportError: x"), probe(no_driver()))
    assert broken_cpu.status == FAIL and broken_cpu.fix == 'pip install --force-reinstall "torch==2.13.0"'


def test_a_driver_too_old_for_any_line_leaves_every_torch_unused() -> None:
    on_470 = probe(FakeNvml(driver="470.256.02", cuda=11040))
    for facts in (TorchFacts("2.13.0+cpu"), TorchFacts("2.13.0+cu126", "12.6", False, error="too old")):
        check = torch_check(facts, on_470)
        assert check.status == WARN and check.fix == driver_advice()


def test_a_probe_without_gpus_counts_as_none() -> None:
    assert not NvidiaProbe(driver="580.65.06").usable
