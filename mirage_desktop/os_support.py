"""Every call that exists on some operating systems only, each behind a guard with a fallback, so the rest of the
package is the same code on Linux, Windows and macOS.

What lives here: the signals a run stops on and the stack-dump signal, the CPU's feature flags and model name, the
directory fsync that makes a rename durable, and the one ``ctypes`` load (the NVIDIA driver). A test
(tests/test_os_api_scan.py) fails on such an API used anywhere else in the package; tests/test_os_support.py checks
each fallback, and runs the headless app with Windows' absences simulated.

Named ``os_support``, not ``platform``: a ``platform`` module in the package would shadow the standard library's
whenever the package folder itself is on ``sys.path`` (a file of it run as a script, some freezers), and this module
needs the standard ``platform`` itself.
"""

from __future__ import annotations

import faulthandler
import functools
import os
import platform
import signal
import sys

#: Signals that end a run the way Ctrl+C does, where this OS has them: SIGTERM is what ``docker stop``, systemd and
#: most supervisors send; SIGHUP comes when the terminal closes (POSIX); SIGBREAK is Ctrl+Break in a Windows console.
STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
#: ``kill -USR1 <pid>`` prints every thread's stack to stderr (POSIX: Windows has neither the signal nor
#: ``faulthandler.register``).
DUMP_SIGNAL_NAME = "SIGUSR1"
#: the kernel's CPU description (Linux only), read as an extra to torch's cpuinfo and for the model name
PROC_CPUINFO = "/proc/cpuinfo"
UNKNOWN_CPU = "unknown CPU"


def stop_signals() -> tuple[signal.Signals, ...]:
    """The stop signals (:data:`STOP_SIGNAL_NAMES`) this OS has, in that order: SIGINT and SIGTERM everywhere,
    SIGHUP on POSIX, SIGBREAK on Windows."""
    found = (getattr(signal, name, None) for name in STOP_SIGNAL_NAMES)
    return tuple(sig for sig in found if sig is not None)


def dump_signal() -> signal.Signals | None:
    """SIGUSR1 where a handler can print the stacks on it; None on Windows (no such signal, no
    ``faulthandler.register``)."""
    sig = getattr(signal, DUMP_SIGNAL_NAME, None)
    return sig if sig is not None and hasattr(faulthandler, "register") else None


def register_stack_dump() -> signal.Signals | None:
    """Make :func:`dump_signal` print every thread's stack to stderr (for a run that seems stuck); returns the
    signal, or None where this OS has none (nothing is installed then). Main thread only, like any handler."""
    sig = dump_signal()
    if sig is not None:
        faulthandler.register(sig, all_threads=True, chain=False)
    return sig


def fsync_directory(path: str | os.PathLike[str]) -> bool:
    """Make a rename into ``path`` (or a file created there) durable by syncing the directory itself; True when
    synced.

    POSIX only: the rename is an entry in the directory, which ``fsync`` of the file does not cover. A documented
    no-op (False) on Windows, where a directory cannot be opened as a file and NTFS journals the change anyway.
    False too where the file system refuses (some network mounts): the caller has synced the data already, and this
    is as durable as that system makes a rename.
    """
    if os.name != "posix":
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's instruction-set flags in lower case (e.g. ``avx2``, ``avx512_bf16``, ``amx_tile``), None when
    nothing can tell.

    torch's cpuinfo (CPUID, every OS) first; on Linux the kernel's own list from /proc/cpuinfo joins it (so a
    flag is there under either spelling, e.g. ``avx512_f`` and ``avx512f``). Either may be missing: torch without
    the query, a /proc that cannot be read; both missing is None ("unknown"), which callers treat as "no".
    """
    flags: set[str] = set()
    known = False
    try:
        import torch

        capabilities = torch.cpu.get_capabilities()
        flags.update(name.lower() for name, value in capabilities.items() if value is True)
        known = True
    except (ImportError, OSError, AttributeError, RuntimeError):  # no torch (or its libraries), no query
        pass
    if sys.platform.startswith("linux"):
        try:
            with open(PROC_CPUINFO, encoding="utf-8", errors="replace") as f:
                line = next((line for line in f if line.startswith(("flags", "Features"))), None)
        except OSError:
            line = None
        if line is not None:
            flags.update(line.split(":", 1)[1].lower().split())
            known = True
    return frozenset(flags) if known else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name, for keys that must change with the machine: the kernel's "model name" on Linux
    (``platform.processor()`` is empty there), ``platform.processor()`` elsewhere, then the architecture, then
    :data:`UNKNOWN_CPU`."""
    if sys.platform.startswith("linux"):
        try:
            with open(PROC_CPUINFO, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or UNKNOWN_CPU


@functools.lru_cache(maxsize=1)
def nvidia_driver_present() -> bool:
    """True when the NVIDIA driver's CUDA library loads into this process (``nvcuda.dll`` on Windows,
    ``libcuda.so.1`` on Linux), tried once per process: without it, asking ONNX Runtime for CUDA only logs errors.
    False on macOS (no CUDA), where ``ctypes`` is missing, or when no library loads."""
    if sys.platform == "darwin":
        return False
    try:
        import ctypes
        import ctypes.util
    except ImportError:
        return False
    if sys.platform == "win32":
        names = ["nvcuda.dll"]
    else:
        names = ["libcuda.so.1", ctypes.util.find_library("cuda") or ""]
    for name in filter(None, names):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False
