"""The soak's hands inside the app's own process: mirage's real entry point, with faults and controls put in from
outside the package.

The harness (another process) writes commands as files into a control folder; the agent here applies them to the
running engine and answers in ``events.jsonl``, and writes ``status.json`` twice a second. Faults happen where
they would in use, by wrapping what the engine calls through its public parts:

- a stage's ``process`` raises (a failing model, CUDA out of memory): :class:`StageHands`, one per stage;
- the source's ``read`` raises :class:`SourceLost` (a camera unplugged);
- the recorder's file (``Recorder.open_file``) fails its writes with ENOSPC (a full disk): :class:`FillingDisk`;
- a model file is broken on disk (the harness does that) and the stage reset, so it loads the broken file.

The same stage wrapper tells which inline stage the processing thread is inside (a slow model, not a hung engine)
and can hold an asynchronous stage between two frames for a quiet memory sample.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import psutil

logger = logging.getLogger("soak")

STATUS_INTERVAL_S = 0.5
POLL_INTERVAL_S = 0.1


class InjectedFault(RuntimeError):
    """What an injected stage failure raises (a stand-in for any exception a model can throw)."""


def cuda_oom_error() -> BaseException:
    """The exception torch raises when the GPU runs out of memory (constructible without a GPU)."""
    try:
        import torch

        return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB (injected fault)")
    except Exception:  # torch missing or too old: the same message on the base class
        return RuntimeError("CUDA out of memory. Tried to allocate 512.00 MiB (injected fault)")


def trim_heap() -> None:
    """glibc keeps freed chunks in its arenas; handing them back before a quiet sample makes two samples compare
    what is in use, not what the heap happened to keep. A no-op where glibc is not there."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Burst:
    """``count`` failures of one stage, then the recovery: how long after the last fault the stage was back at work
    on the call that succeeded (``recovery_s``: any backoff, reload or wedged worker shows here), and when that
    call's output came (``first_output_s``: plus the frame's own compute time)."""

    def __init__(self, name: str, count: int, make: Callable[[], BaseException]) -> None:
        self.name, self.left, self.make = name, count, make
        self.t_last_fault = 0.0


class StageHands:
    """Wraps one stage's ``process`` (an instance attribute over the class's method) for the whole run."""

    def __init__(self, agent: Agent, stage: Any, inline: bool) -> None:
        self.agent, self.stage, self.inline = agent, stage, inline
        self.original = stage.process
        self.burst: _Burst | None = None
        self._cond = threading.Condition()
        self._in_flight = 0
        self._holding = False
        stage.process = self

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def __call__(self, frame: Any) -> Any:
        with self._cond:
            while self._holding:
                self._cond.wait()
            self._in_flight += 1
        try:
            burst = self.burst
            if burst is not None and burst.left > 0:
                burst.left -= 1
                burst.t_last_fault = time.monotonic()
                if burst.left == 0:
                    self.agent.emit("injected", burst.name, stage=self.stage.name)
                raise burst.make()
            t_start = time.monotonic()
            out = self.original(frame)
            if burst is not None:
                self.burst = None
                self.agent.emit("recovered", burst.name, stage=self.stage.name,
                                recovery_s=round(t_start - burst.t_last_fault, 3),
                                first_output_s=round(time.monotonic() - burst.t_last_fault, 3))
            return out
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def hold(self, timeout: float) -> bool:
        """Let the call in flight finish (up to ``timeout``), then keep the next one waiting until :meth:`release`.
        Only for an asynchronous stage: the video goes on showing its last result."""
        with self._cond:
            self._holding = True
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def release(self) -> None:
        with self._cond:
            self._holding = False
            self._cond.notify_all()


class FillingDisk:
    """The recorder's file, whose writes fail as a full disk's do (ENOSPC, nothing written) while the agent says so."""

    def __init__(self, raw: BinaryIO, agent: Agent) -> None:
        self.raw, self.agent = raw, agent

    def write(self, data: bytes) -> int:
        if self.agent.disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class Agent:
    """Applies the harness's commands to the engine and reports what happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.engine: Any = None
        self.hands: dict[str, StageHands] = {}
        self.disk_full = False
        self._events = open(folder / "events.jsonl", "a", encoding="utf-8")
        self._lock = threading.Lock()

    def attach(self, engine: Any) -> None:
        """Wrap the engine's stages and start taking commands (once, for the first engine that starts)."""
        if self.engine is not None:
            return
        self.engine = engine
        for stage in engine.stages:
            inline = engine.every_frame or not stage.asynchronous
            self.hands[stage.name] = StageHands(self, stage, inline)
        threading.Thread(target=self._run, name="soak-agent", daemon=True).start()

    def emit(self, kind: str, name: str, **extra: Any) -> None:
        record = {"t": time.time(), "event": kind, "name": name, **extra}
        with self._lock:
            self._events.write(json.dumps(record, default=str) + "\n")
            self._events.flush()

    def _run(self) -> None:
        next_status = 0.0
        while True:
            for path in sorted(self.folder.glob("cmd-*.json")):
                try:
                    command = json.loads(path.read_text(encoding="utf-8"))
                    path.unlink()
                except (OSError, ValueError):
                    continue  # still being written: next round
                self._apply(command)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_S
                self._write_status()
            time.sleep(POLL_INTERVAL_S)

    def _apply(self, command: dict[str, Any]) -> None:
        op = str(command.get("op"))
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self.emit("error", op, error=f"unknown op {op!r}")
            return
        try:
            handler(command)
        except Exception as exc:  # a bad command must not take the app down; the harness sees the error
            logger.exception("Soak command %s failed", command)
            self.emit("error", op, error=f"{type(exc).__name__}: {exc}")

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        """Slow work (an avatar swap runs the models, a quiet sample waits for a frame) must not hold up the
        next command or the status file."""
        def run() -> None:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 -- reported to the harness
                self.emit("error", name, error=f"{type(exc).__name__}: {exc}")
        threading.Thread(target=run, name=f"soak-{name}", daemon=True).start()

    # ---------------------------------------------------------------------------------------------- faults
    def _op_stage_burst(self, c: dict[str, Any]) -> None:
        name = c["stage"]
        self.hands[name].burst = _Burst(c.get("name", "stage_burst"), int(c.get("count", 3)),
                                        lambda: InjectedFault(f"injected failure in {name}"))

    def _op_cuda_oom(self, c: dict[str, Any]) -> None:
        self.hands[c["stage"]].burst = _Burst(c.get("name", "cuda_oom"), int(c.get("count", 1)), cuda_oom_error)

    def _op_source_lost(self, c: dict[str, Any]) -> None:
        """The next read of the current source raises SourceLost, as an unplugged camera does."""
        from mirage_desktop.engine.sources import SourceLost

        source = self.engine.source

        def lost() -> Any:
            del source.read  # the class's method again
            raise SourceLost(f"{source.describe()} stopped delivering frames (injected fault).")

        source.read = lost
        self.emit("injected", c.get("name", "source_lost"), source=source.describe())

    def _op_disk_full(self, c: dict[str, Any]) -> None:
        self.disk_full = bool(c.get("on", True))
        self.emit("injected" if self.disk_full else "cleared", c.get("name", "disk_full"))

    # --------------------------------------------------------------------------------------------- controls
    def _op_enable(self, c: dict[str, Any]) -> None:
        self.engine.set_stage_enabled(c["stage"], bool(c.get("on", True)))
        self.emit("done", "enable", stage=c["stage"], on=bool(c.get("on", True)))

    def _op_reset_stage(self, c: dict[str, Any]) -> None:
        """Forget a stage's loaded models, as after new model files arrived: the next frame reloads them."""
        self.engine.stage(c["stage"]).reset()
        self.emit("done", "reset_stage", stage=c["stage"])

    def _op_avatar(self, c: dict[str, Any]) -> None:
        stage = self.engine.stage("liveportrait")

        def swap() -> None:
            stage.set_avatar(c["path"])
            self.emit("done", "avatar", path=c["path"])
        self._in_background("avatar", swap)

    def _op_source(self, c: dict[str, Any]) -> None:
        from mirage_desktop.engine.sources import make_source

        old = self.engine.source
        new = make_source(c["spec"], width=int(c.get("width", 1280)), height=int(c.get("height", 720)),
                          fps=float(c.get("fps", getattr(old, "fps", 30.0))))
        self.engine.set_source(new)
        self.emit("done", "source", spec=c["spec"])

    def _op_record(self, c: dict[str, Any]) -> None:
        """Replace the recorder by a new one of the same class writing ``path`` (after a full disk)."""
        old = next((o for o in self.engine.outputs if o.name == "recorder"), None)
        if old is None:
            raise RuntimeError("no recorder to replace; start the app with --record")
        new = type(old)(c["path"], fps=old.fps, on_error=old.on_error)
        self.engine.add_output(new)
        self.engine.remove_output(old)
        self.emit("done", "record", path=c["path"])

    def _op_quiet(self, c: dict[str, Any]) -> None:
        """RSS in the same state every time: the asynchronous stages held between frames (up to ``hold_s`` for
        the frame in flight), garbage collected, free heap pages handed back. Without it a CPU LivePortrait
        frame's activations (hundreds of MB, live most of the time) make two samples differ more than any leak."""
        def sample() -> None:
            waiting = [h for h in self.hands.values() if not h.inline]
            held = [h.hold(float(c.get("hold_s", 90.0))) for h in waiting]
            try:
                gc.collect()
                trim_heap()
                rss_mb = round(psutil.Process().memory_info().rss / 2**20, 1)
            finally:
                for h in waiting:
                    h.release()
            threads = sorted(t.name for t in threading.enumerate())
            self.emit("quiet", name, held=all(held), rss_mb=rss_mb, threads=threads)
        name = str(c.get("name", "quiet"))
        self._in_background(name, sample)  # an error is reported under the same name

    # ----------------------------------------------------------------------------------------------- status
    def _write_status(self) -> None:
        try:
            engine = self.engine
            stats = engine.stats()
            busy = next((name for name, h in self.hands.items() if h.inline and h.busy), None)
            status = {
                "t": time.time(),
                "frames_in": stats.frames_in,
                "frames_out": stats.frames_out,
                "fps_out": stats.fps_out,
                "e2e_p95_ms": stats.end_to_end.p95_ms,
                "source": stats.source,
                "busy_stage": busy,  # the processing thread is inside it: a slow model, not a hung engine
                "stages": {s.name: {"enabled": s.enabled, "ready": s.ready, "reason": s.reason,
                                    "frames": engine.metrics.stage(s.name).count} for s in engine.stages},
                "outputs": stats.outputs,
            }
            tmp = self.folder / "status.json.tmp"
            tmp.write_text(json.dumps(status, default=str), encoding="utf-8")
            os.replace(tmp, self.folder / "status.json")
        except Exception:
            logger.exception("Writing the soak status failed")


def child_main(control: Path, argv: list[str], tests: Path) -> int:
    """Inside the app's process: the fake device behind pyvirtualcam, the agent on the first engine that starts
    and on every recorder's file, then mirage's own entry point with ``argv``."""
    import pyvirtualcam

    sys.path.insert(0, str(tests))
    from vcam_helpers import BACKEND_NAME, FakeDeviceBackend

    from mirage_desktop.app import main
    from mirage_desktop.engine.pipeline import Engine
    from mirage_desktop.outputs.recorder import Recorder

    class SoakDevice(FakeDeviceBackend):
        keep = 1

        def send(self, frame: Any) -> None:
            super().send(frame)
            if len(self.times) > 64:  # the test double keeps every write time; an hour of them is not our leak
                del self.times[:-32]

    pyvirtualcam.camera.BACKENDS.clear()
    pyvirtualcam.camera.BACKENDS[BACKEND_NAME] = SoakDevice

    agent = Agent(control)
    start, open_file = Engine.start, Recorder.open_file

    def start_with_agent(engine: Engine, open_source: bool = True) -> None:
        agent.attach(engine)
        start(engine, open_source)

    def open_filling_disk(recorder: Recorder, path: Path) -> BinaryIO:
        return FillingDisk(open_file(recorder, path), agent)  # type: ignore[return-value]

    Engine.start = start_with_agent  # type: ignore[method-assign,assignment]
    Recorder.open_file = open_filling_disk  # type: ignore[method-assign,assignment]
    logger.warning("Soak: faults are injected into this process from %s", control)
    return main(argv)
