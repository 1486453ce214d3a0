"""Latest-frame-wins mailboxes that join the engine's threads.

A slow consumer makes the producer overwrite the waiting item (counted as a drop) instead of building a queue:
latency stays bounded by one item per slot. In ``blocking`` mode (offline rendering) the producer waits instead.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self, blocking: bool = False) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.blocking = blocking
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns False when an unread item was replaced (a drop)."""
        with self._cond:
            if self.blocking:
                while self._item is not None and not self._closed:
                    self._cond.wait(0.1)
                if self._closed:
                    return True  # shutting down: nothing is lost that anyone would have taken
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return not replaced

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout`` seconds; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self._cond.notify_all()
            return item

    @property
    def closed(self) -> bool:
        """True once closed and emptied: the producer is done and nothing is left to take."""
        return self._closed and self._item is None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._item = None
