"""What a native library writes to the process's stderr (and Python prints to stdout) while it runs, kept as text.

ONNX Runtime says why a provider did not load ("libcublasLt.so.13: cannot open shared object file") only on its
native log, and its Python wrapper prints the fallback to stdout; the doctor needs that sentence for the user
instead of on the console (and never inside ``--json``). The redirection is process-wide for its few milliseconds;
where stderr has no descriptor (a windowed app on Windows), nothing is captured and nothing breaks.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator


class Captured:
    """The text written while the ``capture()`` block ran (available after it ends)."""

    def __init__(self) -> None:
        self.text = ""


#: one capture at a time: two overlapping ones (the session's start and the window's System check) would each
#: restore what the other redirected, and leave stderr pointing at a deleted file
_one_at_a_time = threading.RLock()


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
    """Send descriptor 2 and ``sys.stdout`` to a temporary file for the block; their text in ``.text`` after it."""
    with _one_at_a_time:
        with _capture() as result:
            yield result


@contextlib.contextmanager
def _capture() -> Iterator[Captured]:
    result = Captured()
    printed = io.StringIO()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 here: keep Python's prints at least
        with contextlib.redirect_stdout(printed):
            yield result
        result.text = printed.getvalue()
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed):
                yield result
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
    result.text = printed.getvalue() + native
