"""The backend layer's fast parts: weight conversion, the precision guard, the ONNX cache, providers, devices."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from mirage_desktop.liveportrait.backends import export as onnx_export
from mirage_desktop.liveportrait.backends import onnx_backend
from mirage_desktop.liveportrait.backends.base import BackendUnavailable
from mirage_desktop.liveportrait.backends.guard import GuardedModule, problem
from mirage_desktop.liveportrait.backends.select import conformant, resolve_precision
from mirage_desktop.liveportrait.backends.torch_backend import TorchModule, check_device, low_precision_copy
from mirage_desktop.liveportrait.loader import LivePortraitLoadError
from mirage_desktop.liveportrait.retargeting import lip_mlp
from mirage_desktop.vision import onnx_session as osess

ROOT = Path(__file__).resolve().parents[1]


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def test_low_precision_copy_converts_weights_once_and_matches_autocast() -> None:
    """Weights converted up front give autocast's own result (which casts them per call) bit for bit."""
    torch.manual_seed(0)
    net = _Tiny().eval()
    low = low_precision_copy(net, torch.bfloat16)
    assert low.conv.weight.dtype == torch.bfloat16 and low.fc.weight.dtype == torch.bfloat16
    assert low.norm.weight.dtype == torch.float32  # normalisation stays float32
    assert net.conv.weight.dtype == torch.float32  # the original is untouched (it is the guard's fp32 twin)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        oracle = net(x).float()
    with torch.inference_mode():
        out = TorchModule(net, torch.device("cpu"), "bf16")(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, oracle, rtol=0, atol=0)


def test_fp16_on_cpu_is_refused_with_the_fix() -> None:
    with pytest.raises(BackendUnavailable, match="bf16 or fp32"):
        TorchModule(_Tiny(), torch.device("cpu"), "fp16")


def test_auto_precision_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from mirage_desktop.liveportrait.backends import select

    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(select, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(select, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"


class _Fixed:
    backend = "torch"

    def __init__(self, value: torch.Tensor, precision: str) -> None:
        self.value, self.precision, self.calls = value, precision, 0

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.value


@pytest.mark.parametrize(
    ("bad", "why"),
    [(torch.full((1, 3, 8, 8), float("nan")), "non-finite"), (torch.zeros(1, 3, 8, 8), "flat")],
)
def test_guard_switches_a_broken_reduced_module_to_fp32(bad: torch.Tensor, why: str) -> None:
    good = torch.rand(1, 3, 8, 8)
    fp32 = _Fixed(good, "fp32")
    guard = GuardedModule("G", _Fixed(bad, "fp16"), fp32, interval_s=1e9)
    out = guard(torch.zeros(1))
    assert torch.equal(out, good)  # the bad frame itself is re-run at fp32
    assert guard.precision == "fp32" and guard.reason is not None and why in guard.reason and "fp32" in guard.reason
    guard(torch.zeros(1))
    assert fp32.calls == 2  # stays switched


def test_guard_checks_only_every_interval_and_keeps_a_good_module() -> None:
    good = torch.rand(1, 3, 8, 8)
    fast = _Fixed(good, "bf16")
    guard = GuardedModule("W", fast, _Fixed(good, "fp32"), interval_s=1e9)
    for _ in range(3):
        guard(torch.zeros(1))
    assert guard.reason is None and guard.precision == "bf16" and fast.calls == 3
    # the load-time probe compares with fp32: far from it switches
    far = GuardedModule("W", _Fixed(good + 1.0, "bf16"), _Fixed(good, "fp32"))
    assert far.probe(torch.zeros(1)) is not None and far.precision == "fp32"
    assert problem(good, good) is None


def test_conformance_rules() -> None:
    ref = torch.rand(100)
    assert conformant(ref + 5e-5, ref, "fp32")[0]
    assert not conformant(ref + 5e-4, ref, "fp32")[0]
    assert conformant(ref + 0.003, ref, "bf16")[0]
    assert not conformant(ref + 0.02, ref, "bf16")[0]
    assert not conformant(ref * float("nan"), ref, "bf16")[0]


def test_onnx_cache_is_keyed_reused_and_rebuilt_when_broken(tmp_path: Path) -> None:
    """A cached export is reused; a corrupted one is re-exported; ORT's output matches torch (the oracle)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    mlp = lip_mlp().eval()
    messages: list[str] = []
    first = onnx_export.ensure_onnx("lip", mlp, tmp_path, lambda m, f: messages.append(m))
    assert messages and "one time" in messages[0]
    meta = json.loads((first.parent / "manifest.json").read_text())
    assert meta["opset"] >= 20 and meta["torch"] == torch.__version__
    messages.clear()
    assert onnx_export.ensure_onnx("lip", mlp, tmp_path, lambda m, f: messages.append(m)) == first
    assert not messages  # found, not exported again
    first.write_bytes(b"broken")
    again = onnx_export.ensure_onnx("lip", mlp, tmp_path, lambda m, f: messages.append(m))
    assert messages and again == first
    runner = onnx_backend.load("lip", again, torch.device("cpu"), "fp32", 1, None, tmp_path)
    x = torch.rand(3, 65) - 0.5  # batch 3: the MLPs' batch axis is dynamic
    with torch.inference_mode():
        torch.testing.assert_close(runner(x), mlp(x), rtol=0, atol=1e-6)
    # other weights, other key: a stale entry is never found
    with torch.no_grad():
        mlp.mlp[0].bias.add_(1.0)
    assert onnx_export.ensure_onnx("lip", mlp, tmp_path) != first
    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()


def test_providers_use_the_asked_gpu_and_name_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    assert osess.device_index("cuda:1") == 1 and osess.device_index("cuda") == 0
    opts = osess.cuda_provider_options("cuda:1")
    assert opts["device_id"] == "1" and opts["arena_extend_strategy"] == "kSameAsRequested"
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"  # many live input shapes (SCRFD)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [osess.TENSORRT, osess.CUDA, osess.CPU])
    chain = onnx_backend.providers_for("cuda:1", "fp16", tmp_path)
    assert [p[0] if isinstance(p, tuple) else p for p in chain] == [osess.TENSORRT, osess.CUDA, osess.CPU]
    assert chain[0][1]["device_id"] == "1" and chain[0][1]["trt_fp16_enable"] == "1"
    assert Path(chain[0][1]["trt_engine_cache_path"]).is_relative_to(tmp_path)
    assert chain[1][1]["device_id"] == "1"
    reason = osess.provider_fallback(chain, [osess.CPU])
    assert reason is not None and "tensorrt" in reason and "cpu" in reason
    assert osess.provider_fallback([osess.CUDA, osess.CPU], [osess.CUDA, osess.CPU]) is None
    with pytest.raises(BackendUnavailable, match="5-D grid_sample"):
        onnx_backend.providers_for("mps", "fp32")
    with pytest.raises(BackendUnavailable, match="onnxruntime-directml"):
        onnx_backend.providers_for("directml", "fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_explicit_cuda_without_cuda_is_a_load_error_naming_the_fix() -> None:
    with pytest.raises(LivePortraitLoadError, match="use --device cpu"):
        check_device("cuda")
    with pytest.raises(LivePortraitLoadError, match="use --device cpu"):
        check_device("cuda:1")


def test_each_cuda_line_is_one_major_across_onnxruntime_gpu_torch_index_dockerfile_and_readme() -> None:
    """The ORT CUDA provider must link the CUDA major its line installs, or it silently cannot load: the Dockerfile's
    default image is the CUDA 13 line's (the lock's onnxruntime-gpu), the README names each line's torch index, and
    the installed onnxruntime-gpu links the major its own build info states, which is its line's."""
    from mirage_desktop.doctor.lines import CUDA13, LINES, line_for_cuda

    docker = (ROOT / "packaging" / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.", docker)) == {str(CUDA13.major)}
    assert f"ARG CUDA_LINE={CUDA13.major}" in docker
    assert set(re.findall(r"whl/(cu\d+)", readme)) == {line.torch_tag for line in LINES}
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None or shutil.which("readelf") is None:
        pytest.skip("no onnxruntime or readelf")
    lib = Path(spec.origin).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not lib.is_file():
        pytest.skip("onnxruntime without the CUDA provider (not onnxruntime-gpu)")
    from onnxruntime.capi import build_and_package_info as info  # type: ignore[import-untyped]

    line = line_for_cuda(info.cuda_version)
    assert line is not None, f"onnxruntime-gpu built for CUDA {info.cuda_version}, which no line installs"
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    cudart = re.findall(r"libcudart\.so\.(\d+)", needed)
    assert cudart and int(cudart[0]) == line.major, f"{lib.name} links CUDA {cudart}, its line is {line.name}"
    if torch.version.cuda:  # a CUDA torch in this venv must be on the same line
        assert line_for_cuda(torch.version.cuda) is line


def test_settings_and_flags_name_the_librarys_backends_and_precisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """config spells the choices itself (it imports nothing above it): they must be the library's, plus auto; a bad
    value in the file is ignored with a warning, in the environment refused; the flags hold for the run only."""
    from mirage_desktop import app, config
    from mirage_desktop.liveportrait.backends.base import BACKENDS, PRECISIONS

    assert set(config.LIVEPORTRAIT_BACKENDS) == set(BACKENDS)
    assert set(config.LIVEPORTRAIT_PRECISIONS) == {"auto", *PRECISIONS}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"liveportrait_backend": "tensorrt", "liveportrait_precision": "fp16"}))
    settings = config.load_settings(path, env={})
    assert (settings.liveportrait_backend, settings.liveportrait_precision) == ("auto", "fp16")
    assert "liveportrait_backend" in caplog.text and "onnxruntime" in caplog.text
    with pytest.raises(config.ConfigError, match="fp32"):
        config.load_settings(path, env={"MIRAGE_LIVEPORTRAIT_PRECISION": "half"})

    args = app.build_parser().parse_args(["--headless", "--backend", "torch", "--precision", "fp32"])
    app.apply_args(settings, args)
    assert (settings.liveportrait_backend, settings.liveportrait_precision) == ("torch", "fp32")
    saved = settings.to_json()
    assert (saved["liveportrait_backend"], saved["liveportrait_precision"]) == ("auto", "fp16")  # never saved
    with pytest.raises(SystemExit):
        app.build_parser().parse_args(["--backend", "tensorrt"])


def test_a_missing_provider_is_known_before_any_export(
    synth_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime without the asked provider (DirectML on Linux, checked against ORT's real provider list): every
    network runs in PyTorch, one reason names the fix, and no minutes go into exporting graphs that cannot run."""
    from mirage_desktop.liveportrait.backends import build_networks
    from mirage_desktop.liveportrait.loader import load_networks

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MIRAGE_ORT_DEVICE", "directml")
    nets = build_networks(load_networks(synth_weights_dir, torch.device("cpu")), torch.device("cpu"),
                          "onnxruntime", "fp32", cache_dir=tmp_path)
    assert set(nets.choices().values()) == {"torch fp32"}
    (reason,) = nets.all_reasons()
    assert reason.startswith("F, M, W, G, stitching, lip, eye: ") and "onnxruntime-directml" in reason
    assert not list(tmp_path.rglob("*.onnx"))


def test_scrfd_reports_the_provider_it_really_got(shared_dir: Path, tmp_path: Path) -> None:
    """Asked for CUDA where ORT cannot give it (no onnxruntime-gpu provider or no driver here): the detector runs on
    the CPU, says why with the fix, and the face stage shows it as its reason and its backend."""
    import numpy as np

    from mirage_desktop.config import Settings
    from mirage_desktop.engine.frame import Frame
    from mirage_desktop.stages.face import FaceDetectionStage
    from mirage_desktop.vision.scrfd import SCRFDDetector

    model = shared_dir / "models" / "scrfd_2.5g.onnx"
    if osess.choose_providers("cuda")[0] == osess.CUDA:
        pytest.skip("ONNX Runtime can use CUDA here: no fallback to see")
    detector = SCRFDDetector(model, device="cuda")
    assert detector.session.get_providers() == [osess.CPU] and detector.provider == osess.CPU
    assert detector.provider_reason is not None
    assert "could not use cuda and runs on cpu" in detector.provider_reason
    assert "onnxruntime-gpu" in detector.provider_reason
    assert SCRFDDetector(model, device="cpu").provider_reason is None

    (tmp_path / "scrfd").mkdir()
    shutil.copy(model, tmp_path / "scrfd" / "scrfd_2.5g_bnkps.onnx")
    stage = FaceDetectionStage(Settings(models_dir=tmp_path, enable_scrfd=True, device="cuda"))
    assert stage.ensure_ready(block=True), stage.reason
    stage.process(Frame(image=np.zeros((120, 160, 3), np.uint8), index=0, t_capture=0.0))
    assert stage.reason == detector.provider_reason and stage.status().state == "ready"
    assert stage.stats()["backend"] == "onnxruntime cpu"
    from engine_helpers import NumberedSource

    from mirage_desktop.engine.pipeline import Engine

    assert Engine(NumberedSource(count=1), [stage]).stats().backends == {"scrfd": "onnxruntime cpu"}  # /health's


def test_auto_precision_is_fp32_on_a_cpu_without_native_bf16(synth_weights_dir: Path) -> None:
    """The real check of this machine's CPU flags (no monkeypatching): without AVX512-BF16/AMX, auto is fp32."""
    from mirage_desktop.liveportrait.backends.torch_backend import cpu_has_native_bf16
    from mirage_desktop.liveportrait.runner import LivePortrait

    if cpu_has_native_bf16():
        pytest.skip("this CPU has native bf16: auto picks bf16 here")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert "avx512_bf16" not in flags and "amx_bf16" not in flags  # the peer oracle: the kernel's own flag list
    lp = LivePortrait.load(synth_weights_dir, backend="torch", precision="auto")
    assert set(lp.networks.choices().values()) == {"torch fp32"} and not lp.half and lp.networks.all_reasons() == []
