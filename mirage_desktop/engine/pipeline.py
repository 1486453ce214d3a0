"""The threaded frame engine: capture -> stages -> outputs, joined by latest-frame-wins slots.

Three threads: capture (reads the source at its own pace), processing (runs the enabled stages in order) and
output (hands each finished frame to every output). A slow stage therefore drops stale frames instead of building
latency. A stage that declares itself ``asynchronous`` (slower than the camera: the avatar's networks) runs on a
thread of its own instead (:class:`~mirage_desktop.engine.stage_worker.StageWorker`): the processing thread hands
it the newest frame whenever it is idle and shows its latest result on every frame, so the video never waits for it
(except in ``every_frame`` mode, where every stage runs inline on every frame). A stage that raises never stops the video: the frame passes through, the stage's reason says why, and after
``MAX_CONSECUTIVE_FAILURES`` in a row the stage switches itself off with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.metrics import EngineMetrics
from mirage_desktop.engine.outputs import Output
from mirage_desktop.engine.slots import LatestSlot
from mirage_desktop.engine.sources import DemoSource, Source, SourceLost
from mirage_desktop.engine.stage import Stage
from mirage_desktop.engine.stage_worker import StageWorker
from mirage_desktop.engine.stats import EngineStats, GpuMemoryStats, Latency, StageStats

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5

#: A listener gets (level, message); level is "info", "warning" or "error". Called from engine threads.
MessageListener = Callable[[str, str], None]


class Engine:
    """Runs a source through stages into outputs. Thread-safe controls; no Qt."""

    def __init__(
        self,
        source: Source,
        stages: Iterable[Stage] = (),
        *,
        every_frame: bool = False,
        max_frames: int | None = None,
        device: str = "cpu",
        fallback_source: Callable[[], Source] | None = None,
    ) -> None:
        self._source = source
        self.stages: list[Stage] = list(stages)
        self.metrics = EngineMetrics()
        for stage in self.stages:
            self.metrics.stage(stage.name)
        self.every_frame = every_frame
        self.max_frames = max_frames
        self.device = device
        self._fallback_source = fallback_source or (lambda: DemoSource())
        self._outputs: tuple[Output, ...] = ()
        self._listeners: tuple[MessageListener, ...] = ()
        self._capture_slot: LatestSlot[Frame] = LatestSlot(blocking=every_frame)
        self._output_slot: LatestSlot[Frame] = LatestSlot(blocking=every_frame)
        self._threads: list[threading.Thread] = []
        self._workers: dict[str, StageWorker] = {}  # the asynchronous stages' threads while running
        #: what the processing thread runs, in order: each stage with its worker (None: inline); built at start
        self._plan: tuple[tuple[Stage, StageWorker | None], ...] = tuple((s, None) for s in self.stages)
        self._stop = threading.Event()
        self.finished = threading.Event()  # set when the source ended or max_frames were output
        self._pending_source: Source | None = None
        self._outputs_lock = threading.Lock()
        self.last_frame: Frame | None = None

    # ----------------------------------------------------------------------------------------------- controls
    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"Unknown stage {name!r}; known: {', '.join(s.name for s in self.stages) or 'none'}")

    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        """Switch a stage on or off; takes effect on the next frame. Safe from any thread."""
        self.stage(name).set_enabled(enabled)

    @property
    def source(self) -> Source:
        """The source frames are read from. Read-only: every change goes through :meth:`set_source` (a user's
        choice, a WebRTC peer that drives) or the capture thread's own fallback to the demo, one path."""
        return self._source

    def set_source(self, source: Source) -> None:
        """Swap the source at run time; the capture thread opens it and closes the old one (before the start,
        the engine simply takes it)."""
        if not self._threads:
            self._source = source
        else:
            self._pending_source = source

    def add_output(self, output: Output) -> None:
        with self._outputs_lock:
            self._outputs = (*self._outputs, output)

    def remove_output(self, output: Output) -> None:
        with self._outputs_lock:
            self._outputs = tuple(o for o in self._outputs if o is not output)
        try:
            output.close()
        except Exception:
            logger.exception("Closing output %s failed", output.name)

    @property
    def outputs(self) -> tuple[Output, ...]:
        return self._outputs

    def add_listener(self, listener: MessageListener) -> None:
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: MessageListener) -> None:
        self._listeners = tuple(x for x in self._listeners if x != listener)  # bound methods are equal, never identical

    def notify(self, level: str, message: str) -> None:
        log = logger.error if level == "error" else logger.warning if level == "warning" else logger.info
        log("%s", message)
        for listener in self._listeners:
            try:
                listener(level, message)
            except Exception:
                logger.exception("Message listener failed")

    # ---------------------------------------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self, open_source: bool = True) -> None:
        """Open the source (raising SourceError when it cannot; skip with ``open_source=False`` when the caller
        opened it already) and start the threads."""
        if self.running:
            return
        if open_source:
            self.source.open()
        self._stop.clear()
        self.finished.clear()
        # fresh slots: each run counts its own drops (the slots are where drops are counted)
        self._capture_slot = LatestSlot(blocking=self.every_frame)
        self._output_slot = LatestSlot(blocking=self.every_frame)
        self.metrics.reset()
        self._workers = {} if self.every_frame else {
            s.name: StageWorker(s, self._run_stage) for s in self.stages if s.asynchronous}
        self._plan = tuple((s, self._workers.get(s.name)) for s in self.stages)
        for worker in self._workers.values():
            worker.start()
        self._threads = [
            threading.Thread(target=self._capture_loop, name="mirage-capture", daemon=True),
            threading.Thread(target=self._process_loop, name="mirage-process", daemon=True),
            threading.Thread(target=self._output_loop, name="mirage-output", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, close_outputs: bool = True, timeout: float = 60.0) -> None:
        """Stop the threads, release the source and (by default) close every output.

        Waits for the frames in flight (a CPU-only LivePortrait frame can take seconds) up to ``timeout``."""
        self._stop.set()
        self._capture_slot.close()
        self._output_slot.close()
        for worker in self._workers.values():
            worker.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                logger.warning("Engine thread %s did not stop within %.0f s", t.name, timeout)
        for worker in self._workers.values():
            if not worker.join(timeout=max(0.1, deadline - time.monotonic())):
                logger.warning("Engine thread %s did not stop within %.0f s", worker.name, timeout)
        self._threads = []
        self._workers = {}
        try:
            self.source.close()
        except Exception:
            logger.exception("Closing source failed")
        if close_outputs:
            for output in self._outputs:
                try:
                    output.close()
                except Exception:
                    logger.exception("Closing output %s failed", output.name)

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    # ------------------------------------------------------------------------------------------------ threads
    def _switch_source(self, new: Source, *, old_lost: bool = False) -> bool:
        """The capture thread's one way to change the source: open ``new``, then close the old one. False (the old
        one stays) when ``new`` cannot open."""
        old = self._source
        try:
            new.open()
        except Exception as exc:  # SourceError names the fix; the demo fails only if its bundled file is broken
            self.notify("error", f"Demo source failed too: {exc}" if old_lost else f"{exc} Keeping {old.describe()}.")
            return False
        self._source = new
        try:
            old.close()
        except Exception:
            logger.exception("Closing source %s failed", old.describe())
        if not old_lost:
            self.notify("info", f"Source: {new.describe()}")
        return True

    def _capture_loop(self) -> None:
        index = 0
        metrics = self.metrics
        while not self._stop.is_set():
            pending = self._pending_source
            if pending is not None:
                self._pending_source = None
                self._switch_source(pending)
            try:
                image = self._source.read()
            except SourceLost as exc:
                self.notify("error", f"{exc} Switched to the demo source; choose the camera again when it is back.")
                if not self._switch_source(self._fallback_source(), old_lost=True):
                    break  # the demo needs only a bundled file: reported, stop cleanly
                continue
            except Exception as exc:  # a decoder error mid-stream: report once, end the stream
                self.notify("error", f"Source {self._source.describe()} failed: {exc}")
                break
            if image is None:  # end of a file: the other threads drain what is left, then set `finished`
                break
            if self.every_frame and self.max_frames is not None and index >= self.max_frames:
                break  # offline rendering: read no frame that will not be output
            t = time.perf_counter()
            frame = Frame(image=image, index=index, t_capture=t, camera=image)
            index += 1
            metrics.frames_in += 1
            metrics.fps_in.tick(t)
            self._capture_slot.put(frame)  # replacing an unread frame counts a drop in the slot
        self._capture_slot.close()

    def _run_stage(self, stage: Stage, frame: Frame) -> Frame:
        if not stage.ensure_ready(block=False):
            return frame
        t0 = time.perf_counter()
        try:
            out = stage.process(frame)
        except Exception as exc:  # a stage never stops the video
            stage.failures += 1
            message = f"{type(exc).__name__}: {exc}"
            if stage.failures >= MAX_CONSECUTIVE_FAILURES:
                stage.enabled = False
                stage.reason = f"disabled after {stage.failures} failures: {message}"
                self.notify("error", f"{stage.label} switched off: {message}")
            else:
                stage.reason = f"error: {message}"
                if stage.failures == 1:
                    logger.exception("Stage %s failed", stage.name)
            return frame
        self.metrics.stage(stage.name).add(time.perf_counter() - t0)
        if stage.failures:
            stage.failures = 0
            stage.reason = ""
        return out

    def _process_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._capture_slot.get(timeout=0.1)
            if frame is None:
                if self._capture_slot.closed:
                    break
                continue
            for stage, worker in self._plan:
                if not stage.enabled:
                    if worker is not None and worker.result is not None:
                        worker.clear()  # switched off: pass-through from this frame on, and no old result later
                    frame = stage.process_when_off(frame)
                elif worker is None:
                    frame = self._run_stage(stage, frame)
                else:
                    frame = worker.step(frame)
            frame.image.flags.writeable = False  # published: nobody writes to it from here on
            self._output_slot.put(frame)
        self._output_slot.close()

    def _output_loop(self) -> None:
        metrics = self.metrics
        while not self._stop.is_set():
            frame = self._output_slot.get(timeout=0.1)
            if frame is None:
                if self._output_slot.closed:
                    self.finished.set()
                    break
                continue
            for output in self._outputs:
                try:
                    output.send(frame)
                except Exception:
                    logger.exception("Output %s failed", output.name)
            now = time.perf_counter()
            # the age of what is shown: an asynchronous stage's result may come from an earlier frame
            metrics.end_to_end.add(now - (frame.t_capture if frame.t_content is None else frame.t_content))
            metrics.frames_out += 1
            metrics.fps_out.tick(now)
            self.last_frame = frame
            if self.max_frames is not None and metrics.frames_out >= self.max_frames:
                self.finished.set()
                break

    # -------------------------------------------------------------------------------------------------- stats
    @property
    def dropped(self) -> int:
        """Frames replaced in a latest-frame slot before anyone took them, this run (the slots count them)."""
        return self._capture_slot.dropped + self._output_slot.dropped

    def stats(self) -> EngineStats:
        """A snapshot of the engine's figures; ``.to_json()`` is the ``--stats-json`` format."""
        m = self.metrics
        stages: dict[str, StageStats] = {}
        for stage in self.stages:
            entry: dict[str, Any] = {"enabled": stage.enabled, "reason": stage.reason, "label": stage.label}
            if stage.asynchronous and not self.every_frame:
                entry["asynchronous"] = True  # its latency is its compute time; the video does not wait for it
            entry.update(m.stage(stage.name).summary())
            try:
                entry.update(stage.stats())
            except Exception:
                logger.exception("Stage %s stats failed", stage.name)
            stages[stage.name] = StageStats.from_json(entry)
        outputs: dict[str, dict[str, Any]] = {}
        for output in self._outputs:
            try:
                outputs[output.name] = output.stats()
            except Exception:
                outputs[output.name] = {}
        return EngineStats(
            source=self.source.describe(),
            device=self.device,
            frames_in=m.frames_in,
            frames_out=m.frames_out,
            dropped=self.dropped,
            fps_in=round(m.fps_in.rate(), 2),
            fps_out=round(m.fps_out.rate(), 2),
            uptime_s=round(time.perf_counter() - m.started, 3),
            stages=stages,
            end_to_end=Latency.from_json(m.end_to_end.summary()),
            gpu_memory=GpuMemoryStats.from_json(m.gpu.snapshot()),
            host_memory=m.host.snapshot(),
            outputs=outputs,
            backends={name: st.backend for name, st in stages.items() if st.backend},
        )
