"""The one interface through which everything that consumes frames (preview, virtual camera, WebRTC, recorder)
receives them from the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from mirage_desktop.engine.frame import Frame


class Output(ABC):
    """A consumer of processed frames.

    ``send`` runs on the engine's output thread for every published frame and must return quickly: an output that
    does slow work (encoding, pacing a device) hands the frame to its own thread through a latest-frame slot.
    The frame's arrays are read-only and never change afterwards, so keeping a reference is safe; copying is not
    needed. ``close`` is called when the output is removed or the engine stops.
    """

    name: str = "output"

    @abstractmethod
    def send(self, frame: Frame) -> None: ...

    def close(self) -> None:
        """Release devices and threads. Safe to call twice."""

    def stats(self) -> dict[str, Any]:
        """Numbers for the engine's stats (frames sent, repeated, ...)."""
        return {}


class CallbackOutput(Output):
    """Calls a function with every frame (the window preview and tests use it)."""

    def __init__(self, callback: Any, name: str = "callback") -> None:
        self._callback = callback
        self.name = name
        self.frames = 0

    def send(self, frame: Frame) -> None:
        self.frames += 1
        self._callback(frame)

    def stats(self) -> dict[str, Any]:
        return {"frames_sent": self.frames}
