"""Test-only fault injection and control, switched on by one environment variable and read in this one place.

``MIRAGE_FAULTS=<folder>`` (never set in normal use) makes :func:`install` start a small thread that takes
command files (``*.json``, oldest first) from that folder, applies them to the running engine, and answers in
``events.jsonl``; it also writes ``status.json`` (engine counters, stage states, what the processing thread is busy
with) twice a second. ``benchmarks/soak.py`` drives the app through it from another process. Without the variable
nothing here runs, and the only per-frame cost anywhere is the recorder's ``ACTIVE is None`` check per file write.

Faults are injected at the boundary where they would really happen: a stage's ``process`` raising (a failing
model or CUDA running out of memory), a source's ``read`` raising :class:`SourceLost` (a camera unplugged), a
recorder's file write raising ``ENOSPC`` (a full disk), a model file broken on disk followed by a reload.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mirage_desktop.engine.sources import SourceLost, make_source

logger = logging.getLogger(__name__)

ENV_VAR = "MIRAGE_FAULTS"
STATUS_INTERVAL_S = 0.5
POLL_INTERVAL_S = 0.1

#: The running injector, or None (always None unless MIRAGE_FAULTS is set).
ACTIVE: FaultInjector | None = None


class InjectedFault(RuntimeError):
    """What an injected stage failure raises (a stand-in for any exception a model can throw)."""


def cuda_oom_error() -> BaseException:
    """The exception torch raises when the GPU runs out of memory (constructible without a GPU)."""
    try:
        import torch

        return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB (injected fault)")
    except Exception:  # torch missing or too old: the same message on the base class
        return RuntimeError("CUDA out of memory. Tried to allocate 512.00 MiB (injected fault)")


def write_fault() -> OSError | None:
    """The error the next file write must fail with, or None; called by the recorder at its file boundary."""
    injector = ACTIVE
    if injector is None or not injector.disk_full:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def install(engine: Any, env: dict[str, str] | None = None) -> FaultInjector | None:
    """Start the injector when ``MIRAGE_FAULTS`` is set; the headless runner calls this once."""
    global ACTIVE
    folder = (env if env is not None else os.environ).get(ENV_VAR, "")
    if not folder:
        return None
    ACTIVE = FaultInjector(engine, Path(folder))
    ACTIVE.start()
    logger.warning("Fault injection is ON (%s=%s): for tests only", ENV_VAR, folder)
    return ACTIVE


class _Burst:
    """Wraps one stage's ``process`` (an instance attribute, removed when done) to raise ``count`` times, then
    records the recovery: how long after the last fault the stage was back at work on the call that succeeded
    (``recovery_s``: any backoff, reload or wedged worker shows here), and when that call's output came
    (``first_output_s``: plus the frame's own compute time, 12-50 s for LivePortrait on a 2-core CPU)."""

    def __init__(self, injector: FaultInjector, name: str, stage: Any, count: int, make: Callable[[], BaseException]):
        self.injector, self.name, self.stage, self.left, self.make = injector, name, stage, count, make
        self.original = stage.process
        self.t_last_fault = 0.0
        stage.process = self

    def __call__(self, frame: Any) -> Any:
        if self.left > 0:
            self.left -= 1
            self.t_last_fault = time.monotonic()
            if self.left == 0:
                self.injector.emit("injected", self.name, stage=self.stage.name)
            raise self.make()
        t_start = time.monotonic()
        out = self.original(frame)
        del self.stage.process  # the class's method again
        self.injector.emit("recovered", self.name, stage=self.stage.name,
                           recovery_s=round(t_start - self.t_last_fault, 3),
                           first_output_s=round(time.monotonic() - self.t_last_fault, 3))
        return out


class FaultInjector:
    """Applies commands from the control folder to the engine and reports what happened."""

    def __init__(self, engine: Any, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.disk_full = False
        self._events = open(folder / "events.jsonl", "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mirage-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def emit(self, kind: str, name: str, **extra: Any) -> None:
        record = {"t": time.time(), "event": kind, "name": name, **extra}
        with self._lock:
            self._events.write(json.dumps(record, default=str) + "\n")
            self._events.flush()

    # ------------------------------------------------------------------------------------------------ loop
    def _run(self) -> None:
        next_status = 0.0
        while not self._stop.is_set():
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
            self._stop.wait(POLL_INTERVAL_S)

    def _apply(self, command: dict[str, Any]) -> None:
        op = str(command.get("op"))
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self.emit("error", op, error=f"unknown op {op!r}")
            return
        try:
            handler(command)
        except Exception as exc:  # a bad command must not take the app down; the soak sees the error
            logger.exception("Fault command %s failed", command)
            self.emit("error", op, error=f"{type(exc).__name__}: {exc}")

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        """Slow controls (an avatar swap runs the models) must not hold up the next command."""
        def run() -> None:
            try:
                work()
            except Exception as exc:
                self.emit("error", name, error=f"{type(exc).__name__}: {exc}")
        threading.Thread(target=run, name=f"mirage-faults-{name}", daemon=True).start()

    # ---------------------------------------------------------------------------------------------- faults
    def _op_stage_burst(self, c: dict[str, Any]) -> None:
        stage = self.engine.stage(c["stage"])
        _Burst(self, c.get("name", "stage_burst"), stage, int(c.get("count", 3)),
               lambda: InjectedFault(f"injected failure in {stage.name}"))

    def _op_cuda_oom(self, c: dict[str, Any]) -> None:
        _Burst(self, c.get("name", "cuda_oom"), self.engine.stage(c["stage"]), int(c.get("count", 1)), cuda_oom_error)

    def _op_source_lost(self, c: dict[str, Any]) -> None:
        """The next read of the current source raises SourceLost, as an unplugged camera does."""
        deadline = time.monotonic() + 5.0
        while getattr(self.engine, "_pending_source", None) is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # a switch is pending: the fault belongs to the source that will be read
        source = self.engine.source
        original = source.read

        def lost() -> Any:
            source.read = original
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
        self._in_background("avatar", lambda: (stage.set_avatar(c["path"]), self.emit("done", "avatar",
                                                                                     path=c["path"])))

    def _op_source(self, c: dict[str, Any]) -> None:
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
        new = type(old)(c["path"], fps=old.fps, on_error=getattr(old, "on_error", None))
        self.engine.add_output(new)
        self.engine.remove_output(old)
        self.emit("done", "record", path=c["path"])

    def _op_census(self, c: dict[str, Any]) -> None:
        """Live objects of the named classes after a full collection (which per-peer things outlive their peer)
        and the quiet memory; on a thread of its own, so the status file keeps coming meanwhile."""
        threading.Thread(target=self._census, args=(c,), name="mirage-census", daemon=True).start()

    def _census(self, c: dict[str, Any]) -> None:
        import gc

        wanted = set(c.get("types", ()))
        gc.collect()
        counts: dict[str, int] = dict.fromkeys(wanted, 0)
        for obj in gc.get_objects():
            name = type(obj).__name__
            if name in wanted:
                counts[name] += 1
        threads = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
        memory = self._quiet_memory(float(c.get("hold_s", 0.0)))
        self.emit("census", c.get("name", "census"), counts=counts, threads=threads, **memory)

    def _quiet_memory(self, hold_s: float) -> dict[str, Any]:
        """RSS in the same state every time: the asynchronous stages parked between frames (up to ``hold_s`` for
        the frame in flight), freed heap pages trimmed. Without it a CPU LivePortrait frame's activations (hundreds
        of MB, live most of the time) make two samples differ more than any leak."""
        if hold_s <= 0:
            return {}
        workers = list(getattr(self.engine, "_workers", {}).values())
        held = [w.hold(hold_s) for w in workers]
        try:
            host = self.engine.metrics.host
            host.trim()
            return {"held": all(held), **host.snapshot()}
        finally:
            for w in workers:
                w.release()

    # ----------------------------------------------------------------------------------------------- status
    def _busy_stage(self) -> str | None:
        """The stage the processing thread is inside now, if any (tells a slow model from a hung engine)."""
        ident = next((t.ident for t in threading.enumerate() if t.name == "mirage-process"), None)
        frame = sys._current_frames().get(ident) if ident is not None else None
        while frame is not None:
            if frame.f_code.co_name == "_run_stage":
                stage = frame.f_locals.get("stage")
                return getattr(stage, "name", None)
            frame = frame.f_back
        return None

    def _write_status(self) -> None:
        try:
            stats = self.engine.stats().to_json()
            stages = {s.name: {"enabled": s.enabled, "ready": s.ready, "reason": s.reason,
                               "frames": self.engine.metrics.stage(s.name).count} for s in self.engine.stages}
            status = {
                "t": time.time(),
                "frames_in": stats["frames_in"],
                "frames_out": stats["frames_out"],
                "fps_out": stats["fps_out"],
                "e2e_p95_ms": stats["end_to_end"]["p95_ms"],
                "source": stats["source"],
                "busy_stage": self._busy_stage(),
                "stages": stages,
                "outputs": stats["outputs"],
                "host_memory": stats.get("host_memory", {}),
            }
            tmp = self.folder / "status.json.tmp"
            tmp.write_text(json.dumps(status, default=str), encoding="utf-8")
            os.replace(tmp, self.folder / "status.json")
        except Exception:
            logger.exception("Writing the fault status failed")
