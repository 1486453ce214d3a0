"""An asynchronous stage's own thread: a slow stage computes at its own rate while the video keeps the camera's.

The processing thread calls :meth:`StageWorker.step` on every frame. When the worker is idle, step hands it that
frame (latest-frame-wins: a busy worker is never queued for, it gets the newest frame the moment it is free) and,
whatever the worker is doing, puts the stage's latest result into the frame: its image, and its capture time as the
frame's ``t_content`` (the end-to-end latency then measures the age of what is shown). Until a first result exists,
and whenever the stage's last run passed its frame through (loading, a failure, nothing to do), the frame passes
through. The per-frame cost is two attribute reads; the only lock is the inbox's, taken once per handoff.

The worker runs the engine's own ``run`` (``Engine._run_stage``) so readiness, failure counting, the switch-off
after repeated failures and the stage's latency metric (its compute time) are the same as for an inline stage.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.slots import LatestSlot
from mirage_desktop.engine.stage import Stage

logger = logging.getLogger(__name__)

class StageWorker:
    """One asynchronous stage's thread, its inbox (one frame at most) and its latest result."""

    def __init__(self, stage: Stage, run: Callable[[Stage, Frame], Frame]) -> None:
        self.stage = stage
        self._run = run
        self._inbox: LatestSlot[Frame] = LatestSlot()
        #: True from the handoff until the worker is done with the frame; written by the processing thread (True)
        #: and the worker (False) only at those two moments, so the per-frame check needs no lock.
        self.busy = False
        #: The stage's newest output frame, or None (pass-through). One reference swap: readers never see half.
        self.result: Frame | None = None
        self._thread = threading.Thread(target=self._loop, name=f"mirage-stage-{stage.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Ask the thread to finish (after the frame it is computing, if any)."""
        self._inbox.close()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def name(self) -> str:
        return self._thread.name

    # ------------------------------------------------------------------------------------------- per frame
    def step(self, frame: Frame) -> Frame:
        """On the processing thread, for every frame while the stage is on: hand over, then show the result."""
        if not self.busy:
            self.busy = True
            # the job is a frame of its own (the stage sets its fields) sharing the arrays, read-only from now on:
            # the video path publishes them while the stage reads them
            frame.image.flags.writeable = False
            if frame.camera is not None:
                frame.camera.flags.writeable = False
            self._inbox.put(dataclasses.replace(frame))
        result = self.result
        if result is None:
            return frame
        frame.image = result.image
        shown = result.t_content if result.t_content is not None else result.t_capture
        if frame.t_content is None or shown < frame.t_content:
            frame.t_content = shown
        return frame

    def clear(self) -> None:
        """Forget the result (the stage was switched off): the next frames pass through at once."""
        self.result = None

    # -------------------------------------------------------------------------------------------- thread
    def _loop(self) -> None:
        inbox = self._inbox
        while True:
            job = inbox.get(timeout=0.5)
            if job is None:
                if inbox.closed:
                    return
                continue
            try:
                if not self.stage.enabled:  # switched off while the frame waited
                    self.result = None
                    continue
                image = job.image
                out = self._run(self.stage, job)
                # the stage passed its frame through (loading, failed, nothing to show): so does the video
                self.result = None if out.image is image else out
            except Exception:  # run() catches the stage's errors; this is a bug in the machinery: keep the thread
                logger.exception("Worker of stage %s failed", self.stage.name)
                self.result = None
            finally:
                self.busy = False
