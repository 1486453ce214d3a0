"""torch: which CUDA it was built for, whether it sees the GPU and runs a kernel there, against the line the driver
allows. The facts are what torch itself reports (:func:`torch_facts`); the verdict (:func:`torch_check`) only reads
them, so every combination is testable without the hardware."""

from __future__ import annotations

from dataclasses import dataclass

from mirage_desktop.doctor.check import FAIL, OK, WARN, Check
from mirage_desktop.doctor.gpu import NvidiaProbe
from mirage_desktop.doctor.lines import CUDA13, TORCH_VERSION, driver_advice, line_for_cuda, line_for_driver

NAME = "torch"


@dataclass(frozen=True)
class TorchFacts:
    version: str | None  # None: torch does not import
    cuda: str | None = None  # torch.version.cuda: the CUDA it was built for; None for a CPU build
    available: bool = False  # torch.cuda.is_available()
    device: str = ""  # GPU 0's name, as torch sees it
    error: str = ""  # why torch does not import, or why CUDA does not initialise
    kernel_error: str | None = None  # a small kernel on GPU 0 failed with this; None when it ran or was not tried
    threads: int = 0


def torch_facts(run_kernel: bool = True) -> TorchFacts:
    """Ask the installed torch; with a GPU, run a small kernel there (``run_kernel``). Never raises."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure (a missing library too) is the finding
        return TorchFacts(None, error=f"{type(exc).__name__}: {exc}")
    cuda = torch.version.cuda
    threads = torch.get_num_threads()
    if not cuda:
        return TorchFacts(torch.__version__, threads=threads)
    if not torch.cuda.is_available():
        try:
            # is_available() hides the reason; init says it ("driver too old", "no device")
            torch.cuda.init()
            error = "torch.cuda.is_available() is False"
        except Exception as exc:  # noqa: BLE001 - the reason is the finding
            error = " ".join(str(exc).split())
        return TorchFacts(torch.__version__, cuda, False, error=error, threads=threads)
    device = torch.cuda.get_device_name(0)
    kernel_error = None
    if run_kernel:
        try:
            x = torch.arange(8, device="cuda:0", dtype=torch.float32)
            total = float((x * 2).sum().item())
            if total != 56.0:
                kernel_error = f"a test kernel returned {total} instead of 56.0"
        except Exception as exc:  # noqa: BLE001 - "no kernel image is available" and friends
            kernel_error = " ".join(str(exc).split())
    return TorchFacts(torch.__version__, cuda, True, device, kernel_error=kernel_error, threads=threads)


def torch_check(facts: TorchFacts, probe: NvidiaProbe) -> Check:
    """torch's build and what it does with the GPU, against the line the driver runs."""
    allowed = line_for_driver(probe.driver) if probe.driver else None
    target = allowed or CUDA13
    if facts.version is None:
        return Check(NAME, FAIL, f"torch does not import ({facts.error}): the avatar cannot run",
                     target.switch_fix() if probe.usable else f'pip install --force-reinstall "torch=={TORCH_VERSION}"')
    head = f"torch {facts.version}"
    if not facts.cuda:
        if not probe.usable:
            return Check(NAME, OK, f"{head}, a CPU build ({facts.threads} threads); no NVIDIA GPU to use")
        if allowed is None:
            return Check(NAME, WARN, f"{head} is a CPU build and the NVIDIA driver {probe.driver} is too old for any "
                                     "GPU line: the GPU is unused", driver_advice())
        return Check(NAME, WARN, f"{head} is a CPU build: the {probe.gpus[0].name} is unused and the avatar runs "
                                 f"on the CPU", allowed.switch_fix())
    built = line_for_cuda(facts.cuda)
    built_name = built.name if built else f"CUDA {facts.cuda}"
    head = f"{head}, built for CUDA {facts.cuda}"
    if not probe.usable:
        return Check(NAME, OK, f"{head}; no NVIDIA GPU here, so it runs on the CPU ({facts.threads} threads)")
    if allowed is None:
        return Check(NAME, WARN, f"{head}: the NVIDIA driver {probe.driver} is too old for any GPU line, so the "
                                 "GPU is unused", driver_advice())
    if built is None or built.major > allowed.major:
        return Check(NAME, WARN, f"{head}, which the NVIDIA driver {probe.driver} cannot run (it runs "
                                 f"{allowed.name}): the {probe.gpus[0].name} is unused"
                                 + (f" ({facts.error})" if facts.error else ""), allowed.switch_fix())
    if not facts.available:
        return Check(NAME, WARN, f"{head}, does not see the {probe.gpus[0].name} ({facts.error}): the avatar "
                                 "runs on the CPU", target.switch_fix())
    if facts.kernel_error is not None:
        return Check(NAME, WARN, f"{head}, sees {facts.device} but cannot run on it ({facts.kernel_error})",
                     target.switch_fix())
    newer = f"; the driver also runs the {allowed.name} line" if allowed.major > built.major else ""
    return Check(NAME, OK, f"{head} ({built_name} line), runs a test kernel on {facts.device}{newer}")
