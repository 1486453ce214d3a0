"""ONNX Runtime: which providers really load (a tiny session per provider, its providers read back), the CUDA it
was built for, and a CPU ``onnxruntime`` package shadowing ``onnxruntime-gpu`` (both install the same module folder;
the one installed last wins, and uninstalling either breaks the other).

ORT drops a provider whose libraries do not load without raising, so listing ``get_available_providers()`` proves
nothing: only a session's ``get_providers()`` does. The reason ORT gives is on its native log, captured here.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from mirage_desktop.doctor.check import FAIL, OK, WARN, Check
from mirage_desktop.doctor.gpu import NvidiaProbe
from mirage_desktop.doctor.lines import CUDA13, driver_advice, line_for_cuda, line_for_driver
from mirage_desktop.doctor.native_log import capture
from mirage_desktop.vision.onnx_session import (
    CPU,
    CUDA,
    DIRECTML,
    SHORT_NAMES,
    TENSORRT,
    cuda_provider_options,
    preload_cuda_libraries,
)

NAME = "onnxruntime"
MODULE = "onnxruntime"
CPU_PACKAGE = "onnxruntime"
GPU_PACKAGE = "onnxruntime-gpu"
#: providers the app asks for, tried in this order (TensorRT needs CUDA; DirectML is any Windows GPU)
NVIDIA_PROVIDERS = (TENSORRT, CUDA)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ProviderTry:
    provider: str
    loaded: bool
    reason: str = ""  # why not, in ORT's words


@dataclass(frozen=True)
class OrtFacts:
    version: str | None  # None: onnxruntime does not import
    error: str = ""
    package: str = ""  # the distribution whose build is the module now (build_and_package_info.package_name)
    cuda: str | None = None  # the CUDA the build links, "13.0"; None for a CPU build
    owners: tuple[str, ...] = ()  # every installed distribution that installs the onnxruntime module
    available: tuple[str, ...] = ()  # get_available_providers(): compiled in, not necessarily loadable
    tries: tuple[ProviderTry, ...] = ()

    def tried(self, provider: str) -> ProviderTry | None:
        return next((t for t in self.tries if t.provider == provider), None)


def tiny_model() -> bytes:
    """``y = x + x`` on a 1x4 float tensor, at an IR version and opset every ORT since 1.10 reads."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "doctor", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _reason(log: str, error: str | None, actual: list[str]) -> str:
    """ORT's own sentence for a provider that did not load: the library that failed, else the fallback note."""
    text = _ANSI.sub("", log)
    for pattern in (r"with error: ([^\n]+)", r"EP Error ([^\n]+?) when using", r"\[E:onnxruntime[^\]]*\] ([^\n]+)"):
        match = re.search(pattern, text)
        if match:
            return " ".join(match.group(1).split())
    if error:
        return " ".join(error.split())
    return f"ONNX Runtime fell back to {SHORT_NAMES.get(actual[0], actual[0]) if actual else 'nothing'}"


def try_provider(ort: Any, model: bytes, chain: list[Any]) -> ProviderTry:
    """A session asking for ``chain`` (the provider under test first): loaded when it is first in the session's
    providers and the graph gives the right answer."""
    provider = chain[0] if isinstance(chain[0], str) else chain[0][0]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    actual: list[str] = []
    error: str | None = None
    with capture() as log:
        try:
            session = ort.InferenceSession(model, options, providers=chain)
            actual = list(session.get_providers())
            out = session.run(None, {"x": np.ones((1, 4), np.float32)})[0]
            if not np.allclose(out, 2.0):
                error = f"the test graph returned {out.tolist()} instead of 2s"
        except Exception as exc:  # noqa: BLE001 - ORT raises several types; the text is the finding
            error = f"{type(exc).__name__}: {exc}"
    loaded = error is None and bool(actual) and actual[0] == provider
    return ProviderTry(provider, loaded, "" if loaded else _reason(log.text, error, actual))


def _owners() -> tuple[str, ...]:
    names = importlib.metadata.packages_distributions().get(MODULE, [])
    return tuple(sorted({n.lower().replace("_", "-") for n in names}))


def ort_facts(nvidia: bool, device: str = "cuda", tensorrt: bool = True) -> OrtFacts:
    """Import ORT and try the CPU provider, and (``nvidia``: a driver answers) CUDA and TensorRT (``tensorrt``: its
    engine build can take a second), and DirectML where the build has it. Never raises."""
    owners = _owners()
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - a missing library too
        return OrtFacts(None, error=f"{type(exc).__name__}: {exc}", owners=owners)
    try:
        from onnxruntime.capi import build_and_package_info as info

        package, cuda = str(getattr(info, "package_name", "")), getattr(info, "cuda_version", None)
    except ImportError:
        package, cuda = "", None
    available = tuple(ort.get_available_providers())
    model = tiny_model()
    tries = [try_provider(ort, model, [CPU])]
    if nvidia and CUDA in available:
        with capture():  # it prints each library it misses; the session's own reason says it better
            preload_cuda_libraries()  # as the app does before its CUDA sessions
        cuda_try = try_provider(ort, model, [(CUDA, cuda_provider_options(device)), CPU])
        tries.append(cuda_try)
        if tensorrt and TENSORRT in available:
            device_id = {"device_id": cuda_provider_options(device)["device_id"]}
            tries.append(try_provider(ort, model, [(TENSORRT, device_id), (CUDA, device_id), CPU])
                         if cuda_try.loaded else ProviderTry(TENSORRT, False, "CUDA does not load"))
    if DIRECTML in available:
        tries.append(try_provider(ort, model, [(DIRECTML, {"device_id": "0"}), CPU]))
    return OrtFacts(ort.__version__, package=package, cuda=str(cuda) if cuda else None, owners=owners,
                    available=available, tries=tuple(tries))


def _gpu_pin(probe: NvidiaProbe) -> str:
    line = line_for_driver(probe.driver) if probe.driver else None
    return (line or CUDA13).onnxruntime_gpu


def _providers_text(facts: OrtFacts) -> str:
    parts = []
    for t in facts.tries:
        name = SHORT_NAMES.get(t.provider, t.provider)
        optional = ", optional: it speeds up the ONNX backend" if t.provider == TENSORRT else ""
        parts.append(f"{name} loads" if t.loaded else f"{name} does not load ({t.reason}{optional})")
    return "; ".join(parts)


def onnxruntime_check(facts: OrtFacts, probe: NvidiaProbe, platform: str = sys.platform) -> Check:
    """The providers that load, against the GPU that is there."""
    darwin = platform == "darwin"
    install = 'pip install "onnxruntime"' if darwin else f'pip install "onnxruntime-gpu=={_gpu_pin(probe)}"'
    if facts.version is None:
        return Check(NAME, FAIL, f"onnxruntime does not import ({facts.error}): face detection cannot run",
                     f"pip uninstall -y {' '.join(facts.owners) or GPU_PACKAGE} && {install}")
    build = f"CUDA {facts.cuda} build" if facts.cuda else "CPU build"
    head = f"{facts.package or 'onnxruntime'} {facts.version} ({build}): {_providers_text(facts)}"
    cpu = facts.tried(CPU)
    if cpu is None or not cpu.loaded:
        return Check(NAME, FAIL, f"{head}: the CPU provider does not run a test graph",
                     f"pip uninstall -y {' '.join(facts.owners) or GPU_PACKAGE} && {install}")
    if len(facts.owners) > 1 and CPU_PACKAGE in facts.owners:
        lost = ("its GPU providers are gone" if facts.package == CPU_PACKAGE
                else "uninstalling either package breaks the other")
        return Check(NAME, WARN, f"{head}. The CPU package onnxruntime is installed beside "
                                 f"{', '.join(o for o in facts.owners if o != CPU_PACKAGE)}: both fill the same "
                                 f"onnxruntime folder, the one installed last wins (now {facts.package}), and {lost}",
                     f"pip uninstall -y {' '.join(facts.owners)} && {install}")
    if not probe.usable:
        skipped = [SHORT_NAMES[p] for p in NVIDIA_PROVIDERS if p in facts.available]
        note = f"; {' and '.join(skipped)} not tried: no NVIDIA GPU" if skipped else ""
        return Check(NAME, OK, f"{head}{note}")
    gpu = probe.gpus[0].name
    allowed = line_for_driver(probe.driver or "")
    if CUDA not in facts.available:
        return Check(NAME, WARN, f"{head}: this build has no CUDA provider, so face detection and the ONNX backend run "
                                 f"on the CPU although the {gpu} is here",
                     f"pip uninstall -y {' '.join(facts.owners) or CPU_PACKAGE} && {install}"
                     if allowed else driver_advice())
    cuda_try = facts.tried(CUDA)
    if cuda_try is not None and not cuda_try.loaded:
        built = line_for_cuda(facts.cuda)
        if allowed is None:
            fix = driver_advice()
        elif built is None or built.major > allowed.major:
            fix = allowed.switch_fix()
        else:
            fix = (f'pip install "onnxruntime-gpu[cuda,cudnn]=={facts.version}" (the CUDA {built.major} libraries it '
                   f"loads), or {built.switch_fix()}")
        return Check(NAME, WARN, f"{head}: face detection and the ONNX backend run on the CPU although the {gpu} is "
                                 "here", fix)
    return Check(NAME, OK, head)
