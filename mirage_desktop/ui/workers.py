"""Run slow calls (camera probing, avatar preparation, model downloads, output start-up) off the GUI thread.

A :class:`Task` reports back through Qt signals that carry the result or the exception object itself, so the
window decides how to show it. Cancellation is cooperative: the task's ``cancel_event`` is handed to callees that
accept one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

logger = logging.getLogger(__name__)


class TaskSignals(QObject):
    """Lives on the GUI thread; emitting from the worker queues the call to the GUI thread's slots."""

    finished = Signal(object)  # the callee's return value
    errored = Signal(object)  # the exception object
    progress = Signal(object)  # whatever the callee reports through Task.report
    done = Signal()  # after finished or errored, for bookkeeping


class Task(QRunnable):
    """One call of ``fn(*args, **kwargs)`` on a pool thread.

    To let the callee report progress or notice cancellation, pass ``task.report`` / ``task.cancel_event`` into
    ``task.kwargs`` before submitting.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it; the pool keeps a reference until it is done
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name or getattr(fn, "__name__", "task")
        self.signals = TaskSignals()
        self.cancel_event = threading.Event()

    def report(self, value: Any) -> None:
        """Progress callback for the callee (any thread)."""
        self.signals.progress.emit(value)

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:  # pool thread
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # every failure goes back to the window as an object, never lost
            logger.debug("Task %s failed: %s", self.name, exc, exc_info=True)
            self.signals.errored.emit(exc)
        else:
            self.signals.finished.emit(result)
        self.signals.done.emit()


class WorkerPool(QObject):
    """A small thread pool owned by the window; ``shutdown`` cancels and waits so nothing outlives it."""

    def __init__(self, max_threads: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._tasks: set[Task] = set()

    def submit(
        self,
        task: Task,
        *,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Task:
        if on_result is not None:
            task.signals.finished.connect(on_result)
        if on_error is not None:
            task.signals.errored.connect(on_error)
        if on_progress is not None:
            task.signals.progress.connect(on_progress)
        task.signals.done.connect(lambda t=task: self._forget(t))
        self._tasks.add(task)
        self._pool.start(task)
        return task

    def run(self, fn: Callable[..., Any], *args: Any, **callbacks: Any) -> Task:
        """Shorthand: ``pool.run(fn, arg, on_result=..., on_error=...)``."""
        return self.submit(Task(fn, *args), **callbacks)

    @Slot()
    def _forget(self, task: Task) -> None:
        self._tasks.discard(task)

    @property
    def active(self) -> int:
        return len(self._tasks)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Ask every task to stop and wait for them; True when all finished in time."""
        for task in list(self._tasks):
            task.cancel()
        return self._pool.waitForDone(timeout_ms)
