"""Windows' absences simulated on a POSIX machine, for a run of the app in a subprocess (never in the test process:
nothing here can be undone, an audit hook least of all).

What goes: every signal Windows does not have (SIGHUP, SIGUSR1, ... ; SIGBREAK is added, Ctrl+Break's number
there, which nothing sends here), the signal functions Windows lacks, ``faulthandler.register``, ``os.O_DIRECTORY``, and
every read of /proc. The /proc refusal is an audit hook on the "open", "os.listdir" and "os.scandir"
events, so it covers ``open``, ``io.open``, ``os.open`` and pathlib alike (they all raise those events) without
patching each. psutil keeps its reads: it is the portable library, with Windows calls of its own there.

``python tests/windows_absences.py ARGS...`` runs ``mirage ARGS...`` (mirage_desktop.app.main) simulated;
``simulate()`` is for a ``python -c`` bootstrap.
"""

from __future__ import annotations

import errno
import faulthandler
import os
import signal
import sys
from typing import Any

#: what Windows' signal module has (CPython's documentation of ``signal``)
WINDOWS_SIGNALS = frozenset({"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIGBREAK"})
#: Ctrl+Break's signal number on Windows (SIGTTIN on Linux: harmless to handle, nothing sends it here)
SIGBREAK = 21
SIGNAL_FUNCTIONS = ("alarm", "pause", "setitimer", "getitimer", "siginterrupt", "pthread_kill", "pthread_sigmask",
                    "sigpending", "sigwait", "sigwaitinfo", "sigtimedwait")
#: only what the package's own guards look for: POSIX-only ``os`` functions stay, since libraries on their Linux
#: branch (platformdirs' unix module, say) need them here and take other branches on Windows
OS_NAMES = ("O_DIRECTORY",)

refused: list[str] = []  # the /proc paths refused, for the report at exit


def _from_psutil() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("psutil"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _refuse_proc(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, int) or path is None:  # an open descriptor, os.listdir() of the cwd
        return
    text = os.fsdecode(os.fspath(path))
    if (text == "/proc" or text.startswith("/proc/")) and not _from_psutil():
        refused.append(text)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory (simulated Windows)", text)


def simulate() -> list[str]:
    """Take away what Windows lacks (see the module docstring); returns the signal names removed."""
    removed = [name for name in dir(signal) if name in SIGNAL_FUNCTIONS
               or (name.startswith("SIG") and not name.startswith("SIG_") and name not in WINDOWS_SIGNALS)]
    for name in removed:
        delattr(signal, name)
    signal.SIGBREAK = SIGBREAK  # type: ignore[attr-defined]
    for name in ("register", "unregister"):
        if hasattr(faulthandler, name):
            delattr(faulthandler, name)
    for name in OS_NAMES:
        if hasattr(os, name):
            delattr(os, name)
    sys.addaudithook(_refuse_proc)
    return removed


def main(argv: list[str]) -> int:
    simulate()
    from mirage_desktop.app import main as mirage

    try:
        return mirage(argv)  # argv given: no restart on jemalloc (a fresh process would not be simulated)
    finally:
        print(f"windows_absences: {len(refused)} /proc reads refused", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
