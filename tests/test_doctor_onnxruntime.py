"""The ONNX Runtime check: the real ORT of this machine (its CPU provider loads; its CUDA provider really fails to
load without a GPU), a fake ORT module for provider lists and load failures, and a fake ``onnxruntime`` CPU package's
metadata beside the real onnxruntime-gpu for the shadowing case. Every problem's fix asserted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from doctor_helpers import FakeNvml, FakeOrt, no_driver

from mirage_desktop.doctor import onnx_runtime
from mirage_desktop.doctor.check import FAIL, OK, WARN
from mirage_desktop.doctor.gpu import probe
from mirage_desktop.doctor.lines import CUDA12, CUDA13
from mirage_desktop.doctor.onnx_runtime import OrtFacts, ProviderTry, onnxruntime_check, ort_facts, try_provider
from mirage_desktop.vision.onnx_session import CPU, CUDA, TENSORRT

ort = pytest.importorskip("onnxruntime")
GPU_580 = FakeNvml(driver="580.65.06")
GPU_550 = FakeNvml(driver="550.54.15", cuda=12040)


def test_the_tiny_model_runs_on_the_real_runtime() -> None:
    session = ort.InferenceSession(onnx_runtime.tiny_model(), providers=[CPU])
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    assert np.array_equal(session.run(None, {"x": x})[0], x + x)


def test_this_machine_without_a_gpu_is_fine_on_the_cpu_provider(capsys: pytest.CaptureFixture[str]) -> None:
    facts = ort_facts(nvidia=False)
    assert facts.version == ort.__version__ and facts.tried(CPU) == ProviderTry(CPU, True)
    assert facts.tried(CUDA) is None  # not tried without a driver, as the app does not
    check = onnxruntime_check(facts, probe(no_driver()))
    assert check.status == OK and "cpu loads" in check.detail
    assert capsys.readouterr().out == ""


def test_a_provider_that_really_fails_to_load_is_named_with_ortss_reason(capsys: pytest.CaptureFixture[str]) -> None:
    """Told a GPU is there, the real ORT tries CUDA; without the CUDA libraries (this machine) it falls back to the
    CPU, and ORT's own log line becomes the detail."""
    facts = ort_facts(nvidia=True)
    if CUDA not in facts.available:
        pytest.skip("this onnxruntime has no CUDA provider")
    cuda = facts.tried(CUDA)
    assert cuda is not None
    if cuda.loaded:
        pytest.skip("CUDA loads here: no failure to see")
    assert cuda.reason and "\x1b" not in cuda.reason
    assert capsys.readouterr().out == ""  # ORT's fallback note did not reach stdout (--json stays clean)
    check = onnxruntime_check(facts, probe(GPU_580))
    assert check.status == WARN and cuda.reason in check.detail
    assert "although the NVIDIA GeForce RTX 4090" in check.detail
    if facts.cuda and facts.cuda.startswith("13"):
        assert check.fix.startswith(f'pip install "onnxruntime-gpu[cuda,cudnn]=={facts.version}"')
        on_550 = onnxruntime_check(facts, probe(GPU_550))
        assert on_550.fix == CUDA12.switch_fix()  # a CUDA 13 build on a CUDA 12 driver: switch lines


def test_load_failures_from_a_fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeOrt([TENSORRT, CUDA, CPU], {CUDA: "libcublasLt.so.13: cannot open shared object file"}).install(monkeypatch)
    facts = ort_facts(nvidia=True)
    assert facts.package == "onnxruntime-gpu" and facts.cuda == "13.0"
    assert facts.tried(CPU) == ProviderTry(CPU, True)
    assert facts.tried(CUDA) == ProviderTry(CUDA, False, "libcublasLt.so.13: cannot open shared object file")
    assert facts.tried(TENSORRT) == ProviderTry(TENSORRT, False, "CUDA does not load")
    check = onnxruntime_check(facts, probe(GPU_580))
    assert check.status == WARN and "cuda does not load (libcublasLt.so.13" in check.detail
    assert check.fix == ('pip install "onnxruntime-gpu[cuda,cudnn]==1.31.1" (the CUDA 13 libraries it loads), or '
                         + CUDA13.switch_fix())
    assert onnxruntime_check(facts, probe(GPU_550)).fix == CUDA12.switch_fix()  # the driver cannot run CUDA 13


def test_tensorrt_missing_beside_a_working_cuda_is_fine_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeOrt([TENSORRT, CUDA, CPU], {TENSORRT: "libnvinfer.so.10: cannot open shared object file"}).install(monkeypatch)
    facts = ort_facts(nvidia=True)
    check = onnxruntime_check(facts, probe(GPU_580))
    assert check.status == OK and "cuda loads" in check.detail
    assert "tensorrt does not load (libnvinfer.so.10" in check.detail and "optional" in check.detail
    assert ort_facts(nvidia=True, tensorrt=False).tried(TENSORRT) is None


def test_the_fallback_is_read_from_the_session_even_when_ort_says_nothing() -> None:
    class Silent(FakeOrt):
        def InferenceSession(self, model, options, providers):  # type: ignore[no-untyped-def]  # noqa: N802
            from doctor_helpers import FakeSession

            return FakeSession([CPU])

    tried = try_provider(Silent([CUDA, CPU], {}), b"", [(CUDA, {}), CPU])
    assert tried == ProviderTry(CUDA, False, "ONNX Runtime fell back to cpu")


def test_the_cpu_package_shadowing_onnxruntime_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU package's metadata beside the real onnxruntime-gpu: importlib.metadata sees both own the module."""
    if "onnxruntime-gpu" not in onnx_runtime._owners():
        pytest.skip("this machine's onnxruntime is not onnxruntime-gpu")
    info = tmp_path / "onnxruntime-1.31.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime\nVersion: 1.31.1\n")
    (info / "top_level.txt").write_text("onnxruntime\n")
    (info / "RECORD").write_text("onnxruntime/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    facts = ort_facts(nvidia=False)
    assert facts.owners == ("onnxruntime", "onnxruntime-gpu")
    check = onnxruntime_check(facts, probe(no_driver()))
    assert check.status == WARN and "the one installed last wins (now onnxruntime-gpu)" in check.detail
    assert check.fix == 'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "onnxruntime-gpu==1.31.1"'
    on_550 = onnxruntime_check(facts, probe(GPU_550))
    assert on_550.fix.endswith('pip install "onnxruntime-gpu==1.26.0"')


def test_the_cpu_package_alone_on_a_gpu_machine() -> None:
    facts = OrtFacts("1.31.1", package="onnxruntime", owners=("onnxruntime",),
                     available=("AzureExecutionProvider", CPU), tries=(ProviderTry(CPU, True),))
    check = onnxruntime_check(facts, probe(GPU_580))
    assert check.status == WARN and "no CUDA provider" in check.detail
    assert check.fix == 'pip uninstall -y onnxruntime && pip install "onnxruntime-gpu==1.31.1"'
    assert onnxruntime_check(facts, probe(GPU_550)).fix.endswith('"onnxruntime-gpu==1.26.0"')
    assert onnxruntime_check(facts, probe(no_driver())).status == OK
    assert onnxruntime_check(facts, probe(GPU_580), platform="darwin").fix.endswith('pip install "onnxruntime"')


def test_a_runtime_that_does_not_import_or_run_fails() -> None:
    gone = onnxruntime_check(OrtFacts(None, error="ImportError: libonnxruntime.so"), probe(GPU_550))
    assert gone.status == FAIL
    assert gone.fix == 'pip uninstall -y onnxruntime-gpu && pip install "onnxruntime-gpu==1.26.0"'
    broken = OrtFacts("1.31.1", package="onnxruntime-gpu", owners=("onnxruntime-gpu",), available=(CPU,),
                      tries=(ProviderTry(CPU, False, "bad"),))
    check = onnxruntime_check(broken, probe(no_driver()))
    assert check.status == FAIL and "CPU provider does not run" in check.detail
    assert check.fix == 'pip uninstall -y onnxruntime-gpu && pip install "onnxruntime-gpu==1.31.1"'


def test_a_cuda_build_on_a_driver_too_old_for_any_line() -> None:
    facts = OrtFacts("1.26.0", package="onnxruntime-gpu", cuda="12.4", owners=("onnxruntime-gpu",),
                     available=(CUDA, CPU), tries=(ProviderTry(CPU, True), ProviderTry(CUDA, False, "too old")))
    check = onnxruntime_check(facts, probe(FakeNvml(driver="470.256.02", cuda=11040)))
    assert check.status == WARN and check.fix.startswith("update the NVIDIA driver to R580")


def test_captures_from_two_threads_leave_stderr_where_it_was() -> None:
    """The session's start and the window's System check may probe at once: each capture gets its own text, and
    descriptor 2 is the same file afterwards."""
    import os
    import threading

    from mirage_desktop.doctor.native_log import capture

    before = os.fstat(2)
    texts: dict[int, str] = {}

    def write(n: int) -> None:
        with capture() as log:
            for _ in range(50):
                os.write(2, f"thread {n}\n".encode())
        texts[n] = log.text

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert all(texts[n] == f"thread {n}\n" * 50 for n in range(4))
