"""mirage_desktop.os_support: each OS-specific answer against the OS's own (the kernel's files, lscpu, stat,
ldconfig, faulthandler's output), each fallback against its documented value, and the headless app run with
Windows' absences simulated (tests/windows_absences.py)."""

from __future__ import annotations

import builtins
import faulthandler
import json
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirage_desktop import os_support

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
LINUX = sys.platform.startswith("linux")
POSIX = os.name == "posix"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The answers are cached per process; every test asks afresh, and leaves no patched answer behind."""
    for cached in (os_support.cpu_flags, os_support.cpu_model, os_support.nvidia_driver_present):
        cached.cache_clear()
    yield
    for cached in (os_support.cpu_flags, os_support.cpu_model, os_support.nvidia_driver_present):
        cached.cache_clear()


def fail_proc_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every open of a /proc path raise, as on Windows and macOS; returns the paths tried."""
    real_open = builtins.open
    tried: list[str] = []

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith("/proc"):
            tried.append(str(file))
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    return tried


def kernel_cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo, read here independently."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


# --- signals ----------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not POSIX, reason="the POSIX set")
def test_stop_signals_on_posix_are_int_term_and_hup() -> None:
    assert [s.name for s in os_support.stop_signals()] == ["SIGINT", "SIGTERM", "SIGHUP"]
    assert [int(s) for s in os_support.stop_signals()] == [2, 15, 1]  # the numbers POSIX fixes for them


def test_stop_signals_without_sighup_but_with_sigbreak_are_windows_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' signal module: no SIGHUP, but SIGBREAK (21 there) for Ctrl+Break."""
    monkeypatch.delattr(signal, "SIGHUP", raising=False)
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    assert [int(s) for s in os_support.stop_signals()] == [2, 15, 21]


@pytest.mark.skipif(not POSIX, reason="SIGUSR1 is POSIX")
def test_dump_signal_is_sigusr1_on_posix() -> None:
    sig = os_support.dump_signal()
    assert sig is not None and sig.name == "SIGUSR1"


def test_no_dump_signal_without_sigusr1_or_faulthandler_register(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.delattr(signal, "SIGUSR1", raising=False)
        assert os_support.dump_signal() is None
    monkeypatch.delattr(faulthandler, "register", raising=False)
    assert os_support.dump_signal() is None


def test_register_stack_dump_installs_nothing_where_there_is_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(signal, "SIGUSR1", raising=False)
    calls: list[Any] = []
    if hasattr(faulthandler, "register"):
        monkeypatch.setattr(faulthandler, "register", lambda *a, **k: calls.append(a))
    assert os_support.register_stack_dump() is None
    assert calls == []


@pytest.mark.skipif(not POSIX, reason="kill -USR1 is POSIX")
def test_the_dump_signal_prints_every_threads_stack() -> None:
    """A real process, a real SIGUSR1: faulthandler's own dump (its header per thread) shows on stderr."""
    code = ("import os, threading, time\n"
            "from mirage_desktop import os_support\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "sig = os_support.register_stack_dump()\n"
            "os.kill(os.getpid(), sig)\n"
            "print('alive', flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                       env=_env())
    assert r.returncode == 0 and r.stdout.strip() == "alive", r.stderr  # a dump, not the signal's default (death)
    headers = re.findall(r"^(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$", r.stderr, re.M)
    assert sorted(headers) == ["Current thread", "Thread"], r.stderr  # both threads, the signalled one marked


def test_headless_handles_only_the_signals_this_os_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' absences in the headless run's own installer: handlers for SIGINT and SIGTERM, none for SIGHUP, no
    dump registered, and the previous handlers given back."""
    from mirage_desktop import headless

    monkeypatch.delattr(signal, "SIGHUP", raising=False)
    monkeypatch.delattr(signal, "SIGUSR1", raising=False)
    installed: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: installed.setdefault(int(signum), handler))
    if hasattr(faulthandler, "register"):
        monkeypatch.setattr(faulthandler, "register", lambda *a, **k: pytest.fail("registered a dump signal"))
    assert threading.current_thread() is threading.main_thread()
    previous = headless.install_stop_signals(threading.Event())
    assert sorted(installed) == [2, 15]
    assert sorted(previous) == [2, 15]


# --- directory fsync --------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not POSIX, reason="directories are synced on POSIX only")
def test_fsync_directory_syncs_that_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[os.stat_result] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert os_support.fsync_directory(tmp_path) is True
    want = tmp_path.stat()
    assert [(stat.S_ISDIR(s.st_mode), s.st_ino, s.st_dev) for s in synced] == [(True, want.st_ino, want.st_dev)]


def test_fsync_directory_is_a_no_op_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(os, "open", lambda *a, **k: pytest.fail("opened a directory on Windows"))
    assert os_support.fsync_directory(tmp_path) is False


@pytest.mark.skipif(not POSIX, reason="POSIX path")
def test_fsync_directory_failures_are_false_and_close_the_descriptor(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert os_support.fsync_directory(tmp_path / "missing") is False
    opened: list[int] = []
    closed: list[int] = []
    real_open, real_close = os.open, os.close

    def open_(*args: Any, **kwargs: Any) -> int:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "close", close)

    def refuse(fd: int) -> None:
        raise OSError(22, "Invalid argument")  # what some network file systems answer

    monkeypatch.setattr(os, "fsync", refuse)
    assert os_support.fsync_directory(tmp_path) is False
    assert len(opened) == 1 and closed == opened


@pytest.mark.skipif(not POSIX, reason="POSIX path")
def test_fsync_directory_works_without_o_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "O_DIRECTORY", raising=False)
    assert os_support.fsync_directory(tmp_path) is True


# --- CPU flags and model ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="the kernel's flag list is Linux's")
def test_cpu_flags_hold_the_kernels_and_torchs_flags() -> None:
    import torch

    kernel = set((kernel_cpuinfo_field("flags") or kernel_cpuinfo_field("Features") or "").split())
    from_torch = {name for name, value in torch.cpu.get_capabilities().items() if value is True}
    flags = os_support.cpu_flags()
    assert flags is not None and kernel | from_torch <= flags


@pytest.mark.skipif(not LINUX, reason="the kernel's flag list is Linux's")
def test_cpu_flags_without_proc_are_torchs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows and macOS: no /proc, torch's cpuinfo alone; the AVX2 answer still agrees with the kernel's."""
    kernel = set((kernel_cpuinfo_field("flags") or "").split())
    tried = fail_proc_reads(monkeypatch)
    flags = os_support.cpu_flags()
    assert tried and flags is not None
    assert ("avx2" in flags) == ("avx2" in kernel)
    assert ("avx512_bf16" in flags) == ("avx512_bf16" in kernel)


@pytest.mark.skipif(not LINUX, reason="the kernel's flag list is Linux's")
def test_cpu_flags_without_torchs_query_are_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delattr(torch.cpu, "get_capabilities")
    kernel = frozenset((kernel_cpuinfo_field("flags") or kernel_cpuinfo_field("Features") or "").lower().split())
    assert os_support.cpu_flags() == kernel


def test_cpu_flags_are_unknown_when_nothing_can_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delattr(torch.cpu, "get_capabilities")
    fail_proc_reads(monkeypatch)
    assert os_support.cpu_flags() is None


def test_cpu_flags_off_linux_never_read_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(sys, "platform", "win32")
    tried = fail_proc_reads(monkeypatch)
    flags = os_support.cpu_flags()
    assert tried == []
    assert flags == frozenset(name for name, value in torch.cpu.get_capabilities().items() if value is True)


def test_native_bf16_follows_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule: AVX512-BF16 or AMX is native; anything else, and unknown flags, is not."""
    from mirage_desktop.liveportrait.backends import torch_backend

    for flags, native in ((None, False), (frozenset({"avx2", "avx512_f"}), False),
                          (frozenset({"avx512_bf16"}), True), (frozenset({"amx_tile"}), True)):
        monkeypatch.setattr(torch_backend, "cpu_flags", lambda flags=flags: flags)
        assert torch_backend.cpu_has_native_bf16() is native, flags


@pytest.mark.skipif(not LINUX, reason="Linux")
def test_cpu_model_on_linux_is_the_kernels_model_name() -> None:
    model = kernel_cpuinfo_field("model name")
    if model is None:
        pytest.skip("this kernel's cpuinfo has no model name (an ARM board, say)")
    assert os_support.cpu_model() == model
    lscpu = shutil.which("lscpu")
    if lscpu:  # a second witness, util-linux's own reading
        out = subprocess.run([lscpu], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
        names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")]
        assert not names or names[0] == model


def test_cpu_model_without_proc_is_platforms(monkeypatch: pytest.MonkeyPatch) -> None:
    fail_proc_reads(monkeypatch)
    assert os_support.cpu_model() == (platform.processor() or platform.machine() or "unknown CPU")


def test_cpu_model_elsewhere_is_platform_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    tried = fail_proc_reads(monkeypatch)
    monkeypatch.setattr(platform, "processor", lambda: "Intel64 Family 6 Model 143 Stepping 8, GenuineIntel")
    assert os_support.cpu_model() == "Intel64 Family 6 Model 143 Stepping 8, GenuineIntel"
    assert tried == []


def test_cpu_model_fallback_is_unknown_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fail_proc_reads(monkeypatch)
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "")
    assert os_support.cpu_model() == "unknown CPU"


# --- the NVIDIA driver ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="Linux's loader")
def test_nvidia_driver_present_agrees_with_nvidia_smi_and_the_loader() -> None:
    import ctypes.util

    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi], capture_output=True).returncode == 0:
        assert os_support.nvidia_driver_present() is True  # the driver answers, so its library loads
        return
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        pytest.skip("no ldconfig to ask")
    if "libcuda.so" in subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout:
        assert os_support.nvidia_driver_present() is True
    elif ctypes.util.find_library("cuda") is None and not any(
            Path(d, "libcuda.so.1").exists() for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d):
        assert os_support.nvidia_driver_present() is False
    else:
        pytest.skip("libcuda is somewhere the loader may or may not find")


def test_nvidia_driver_is_absent_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail(f"loaded {name} on macOS"))
    assert os_support.nvidia_driver_present() is False


@pytest.mark.parametrize(("system", "first"), [("win32", "nvcuda.dll"), ("linux", "libcuda.so.1")])
def test_nvidia_driver_library_names(monkeypatch: pytest.MonkeyPatch, system: str, first: str) -> None:
    import ctypes

    tried: list[str] = []

    def cdll(name: str) -> object:
        tried.append(name)
        if name != first:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert os_support.nvidia_driver_present() is True and tried == [first]


def test_nvidia_driver_is_absent_when_no_library_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    def cdll(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert os_support.nvidia_driver_present() is False


def test_nvidia_driver_without_ctypes_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ctypes", None)  # import ctypes raises ImportError (a stripped interpreter)
    monkeypatch.setattr(sys, "platform", "linux")
    assert os_support.nvidia_driver_present() is False


# --- the headless app with Windows' absences --------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.mark.skipif(not LINUX, reason="the simulation is of /proc and POSIX signals, on Linux")
def test_the_simulation_takes_windows_absences_away() -> None:
    """The bootstrap itself, checked before trusting the run below: signals gone, /proc unreadable by every route,
    psutil still working."""
    code = ("import os, pathlib, signal, faulthandler, windows_absences as w\n"
            "w.simulate()\n"
            "assert not hasattr(signal, 'SIGHUP') and not hasattr(signal, 'SIGUSR1') and signal.SIGBREAK == 21\n"
            "assert hasattr(signal, 'SIGINT') and hasattr(signal, 'SIGTERM')\n"
            "assert not hasattr(faulthandler, 'register') and not hasattr(os, 'O_DIRECTORY')\n"
            "for read in (lambda: open('/proc/cpuinfo'), lambda: pathlib.Path('/proc/self/statm').read_bytes(),\n"
            "             lambda: os.open('/proc/cpuinfo', os.O_RDONLY), lambda: os.listdir('/proc')):\n"
            "    try:\n"
            "        read()\n"
            "    except OSError:\n"
            "        continue\n"
            "    raise SystemExit('a /proc read went through')\n"
            "import psutil\n"
            "assert psutil.Process().memory_info().rss > 0\n"
            "print('simulated', len(w.refused))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "simulated 4"


@pytest.mark.skipif(not LINUX, reason="the simulation is of /proc and POSIX signals, on Linux")
def test_headless_runs_and_writes_its_stats_with_windows_absences(tmp_path: Path, shared_dir: Path) -> None:
    """The real app, in a subprocess simulated as above, with face detection on (an ORT session): exits 0 and
    writes stats with frames through the detector."""
    stats_path = tmp_path / "s.json"
    r = subprocess.run([sys.executable, str(TESTS / "windows_absences.py"), "--headless", "--source", "demo",
                        "--seconds", "3", "--width", "320", "--height", "240", "--quiet", "--enable", "scrfd",
                        "--scrfd-model", str(shared_dir / "models" / "scrfd_2.5g.onnx"),
                        "--stats-json", str(stats_path)],
                       capture_output=True, text=True, timeout=180, cwd=REPO, env=_env())
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "windows_absences:" in r.stderr  # the run was the simulated one
    stats = json.loads(stats_path.read_text())
    assert stats["frames_out"] > 0
    scrfd = stats["stages"]["scrfd"]
    assert scrfd["enabled"] and not scrfd["reason"] and scrfd["p50_ms"] is not None
