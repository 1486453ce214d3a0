"""The Mirage Microphone as one of the engine's outputs, beside the virtual camera: started and stopped the same
way, closed with the engine (the Linux device is removed then), and its figures in the engine's stats under
``outputs.microphone`` (so ``--stats-json``, ``/health`` and ``/metrics`` read them where they read the camera's).

It takes no frames: :meth:`send` does nothing, the audio runs on its own thread (:mod:`.pipe`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mirage_desktop.audio.pipe import OFF, STARTING, MicrophonePipe, StatusListener
from mirage_desktop.audio.pulse import SoundServer
from mirage_desktop.audio.virtual_mic import VirtualMicrophone, VirtualMicUnavailable, sound_server, virtual_microphone
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import Output

logger = logging.getLogger(__name__)


class MicrophoneOutput(Output):
    """The real ``microphone`` delayed by ``delay()`` (seconds; :class:`~mirage_desktop.audio.sync.VideoDelay`)
    plus ``offset_ms``, played into this OS's virtual microphone."""

    name = "microphone"

    def __init__(self, microphone: str, delay: Callable[[], float | None], *, offset_ms: float = 0.0,
                 virtual: VirtualMicrophone | None = None, server: SoundServer | None = None,
                 on_status: StatusListener | None = None) -> None:
        self.server = server if server is not None else sound_server()
        self.virtual = virtual if virtual is not None else virtual_microphone(server=self.server)
        self.pipe = MicrophonePipe(microphone, self.virtual, delay, offset_ms=offset_ms, server=self.server,
                                   on_status=on_status)

    def start(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Start the audio thread. With ``wait``, until the virtual microphone plays (or ``timeout``), raising
        VirtualMicUnavailable (what to install) when it cannot be made; a missing microphone is only waited for
        (:attr:`MicrophonePipe.message` says so)."""
        self.pipe.start()
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pipe.status == STARTING and not self._output_problem():
            time.sleep(0.02)
        problem = self._output_problem()
        if problem:
            self.close()
            raise VirtualMicUnavailable(problem)

    def _output_problem(self) -> str:
        return self.pipe.problem("output") if not self.pipe.output_label else ""

    @property
    def running(self) -> bool:
        return self.pipe.running and self.pipe.status != OFF

    def send(self, frame: Frame) -> None:
        """Nothing: the audio has its own thread."""

    def close(self) -> None:
        self.pipe.stop()
        self.virtual.remove()
        if self.server is not None:
            self.server.close()

    def stats(self) -> dict[str, Any]:
        return self.pipe.stats()
