"""Every OS-specific call is in mirage_desktop/os_support.py: a scan of the package's code (its syntax tree, so
comments and docstrings may name anything) fails on one anywhere else, with file:line and what to use instead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mirage_desktop"
#: the one module allowed to hold them, each behind a guard
OS_SUPPORT = "mirage_desktop/os_support.py"
#: modules that exist on some OSes only (or whose use is OS-specific by nature: ctypes loads native libraries)
OS_MODULES = frozenset({"ctypes", "_ctypes", "fcntl", "msvcrt", "winreg", "_winapi", "winsound", "resource", "termios",
                        "pwd", "grp", "posix", "nt"})
#: names that are OS-specific wherever they appear: native library loaders, POSIX-only or Windows-only signals
OS_NAMES = frozenset({"CDLL", "WinDLL", "OleDLL", "cdll", "windll", "oledll", "O_DIRECTORY",
                      "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "SIGCHLD", "SIGPIPE", "SIGKILL",
                      "SIGSTOP", "SIGCONT", "SIGTSTP", "SIGWINCH", "SIGBREAK", "CTRL_C_EVENT", "CTRL_BREAK_EVENT"})
#: module -> attributes that exist on some OSes only (generic names such as ``sync`` count only when qualified)
OS_ATTRIBUTES = {
    "os": frozenset({"getuid", "geteuid", "getgid", "getegid", "killpg", "setsid", "setpgrp", "getpgid", "fork",
                     "forkpty", "sched_getaffinity", "sched_setaffinity", "nice", "startfile", "sync", "O_BINARY"}),
    "signal": frozenset({"pthread_kill", "pthread_sigmask", "sigwait", "setitimer", "getitimer", "alarm", "pause",
                         "siginterrupt"}),
    "faulthandler": frozenset({"register", "unregister"}),
}
USE_INSTEAD = "use mirage_desktop.os_support (or add a guarded function there)"


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string constants that are documentation: bare string statements (docstrings and the like)."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _is_fileno_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fileno"


def os_api_uses(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, what) for every OS-specific API in ``source``, in line order."""
    tree = ast.parse(source, filename)
    docs = _documentation(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in OS_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in OS_MODULES:
                found.append((node.lineno, f"from {node.module} import"))
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names
                      if a.name in OS_NAMES or a.name in OS_ATTRIBUTES.get(top, ())]
        elif isinstance(node, ast.Name) and node.id in OS_NAMES:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr in OS_NAMES:
                found.append((node.lineno, f"{owner or '...'}.{node.attr}"))
            elif owner is not None and node.attr in OS_ATTRIBUTES.get(owner, ()):
                found.append((node.lineno, f"{owner}.{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fsync" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "os" and node.args \
                and not _is_fileno_call(node.args[0]):
            found.append((node.lineno, "os.fsync of a raw descriptor (a directory's?): os_support.fsync_directory, "
                                       "or fsync a file object's fileno()"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if text.startswith("/proc"):
                found.append((node.lineno, f"path {text!r}"))
            elif text in OS_NAMES:
                found.append((node.lineno, f"name {text!r}"))
    return sorted(found)


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_os_specific_api_outside_os_support() -> None:
    offending: list[str] = []
    for path in package_files():
        rel = path.relative_to(REPO).as_posix()
        if rel == OS_SUPPORT:
            continue
        offending += [f"{rel}:{line}: {what}" for line, what in os_api_uses(path.read_text(encoding="utf-8"), rel)]
    assert not offending, f"OS-specific APIs outside {OS_SUPPORT} ({USE_INSTEAD}):\n" + "\n".join(offending)


def test_os_support_holds_what_it_is_for() -> None:
    """The module the scan points to exists and is where these calls went (not merely somewhere unscanned)."""
    found = {what for _, what in os_api_uses((REPO / OS_SUPPORT).read_text(encoding="utf-8"))}
    assert {"import ctypes", "ctypes.CDLL", "faulthandler.register"} <= found
    assert any(w.startswith("path '/proc") for w in found) and "name 'SIGHUP'" in found and "name 'SIGUSR1'" in found


SAMPLE = '''"""A docstring may say SIGHUP, /proc/cpuinfo, ctypes.CDLL(...) and os.fsync(dir_fd)."""
import ctypes
from ctypes.util import find_library
import fcntl
from signal import SIGUSR1
import os, signal, faulthandler


def f(path):
    """Nor is this one a use: SIGUSR1, msvcrt."""
    # a comment: SIGHUP /proc/self/statm ctypes
    lib = ctypes.CDLL(None)
    signal.signal(signal.SIGHUP, print)
    getattr(signal, "SIGUSR1")
    open("/proc/cpuinfo").read()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.getuid()
    faulthandler.register(10)
    with open(path) as fh:
        os.fsync(fh.fileno())
    self.sync()
    text = f"/proc/{os.getpid()}/status"
    return "see SIGHUP in the manual"
'''


def test_the_scan_finds_each_kind_of_use_and_no_documentation() -> None:
    """The oracle: the line numbers written out by hand for SAMPLE above."""
    found = os_api_uses(SAMPLE)
    lines = {line for line, _ in found}
    assert lines == {2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 23}, found
    whats = [what for _, what in found]
    assert "ctypes.CDLL" in whats and "signal.SIGHUP" in whats and "name 'SIGUSR1'" in whats
    assert "os.O_DIRECTORY" in whats and "os.getuid" in whats and "faulthandler.register" in whats
    assert any(w.startswith("os.fsync of a raw descriptor") for w in whats)
    assert "path '/proc/cpuinfo'" in whats and "path '/proc/'" in whats
