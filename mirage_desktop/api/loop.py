"""The server's asyncio loop on its own thread, so the window and the headless runner only call start and stop.

aiohttp and aiortc live on one event loop; the app's threads (Qt, the headless main thread) reach it only through
:meth:`LoopThread.call`, which hands a coroutine over and waits for its result.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class LoopNotReady(RuntimeError):
    """The startup coroutine neither finished nor failed in time."""


class LoopThread:
    """One event loop on one daemon thread: started by a coroutine that must succeed, stopped by one that cleans up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, startup: Callable[[], Awaitable[None]], abort: Callable[[], Awaitable[None]],
              timeout: float) -> None:
        """Run ``startup`` on a new loop and return once it is done; its exception is raised here as is (after
        ``abort`` ran on the loop), :class:`LoopNotReady` when it takes longer than ``timeout``."""
        ready = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(startup, abort, ready), name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise LoopNotReady(f"{self.name} did not start within {timeout:.0f} s")
        if self._start_error is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
            error, self._start_error = self._start_error, None
            raise error

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run ``coro`` on the loop from any other thread and wait for its result."""
        loop = self._loop
        if loop is None or not self.running:
            coro.close()
            raise RuntimeError("The HTTP server is not running; call start() first.")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def stop(self, shutdown: Callable[[], Coroutine[Any, Any, None]], timeout: float) -> None:
        """Run ``shutdown`` on the loop, then end the loop and its thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        except Exception:
            logger.exception("HTTP server shutdown was not clean")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout)
        if thread.is_alive():
            logger.warning("The HTTP server thread did not stop within %.0f s", timeout)
        self._thread = None

    def _run(self, startup: Callable[[], Awaitable[None]], abort: Callable[[], Awaitable[None]],
             ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(startup())
        except BaseException as exc:  # noqa: BLE001 -- bind failures are reported to start()'s caller
            self._start_error = exc
            ready.set()
            loop.run_until_complete(abort())
            loop.close()
            self._loop = None
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            self._loop = None
