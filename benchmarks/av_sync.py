"""How far the Mirage Microphone's voice is from the virtual camera's picture, on the real headless app.

    python benchmarks/av_sync.py --seconds 60 [--json OUT] [--stage-delay-ms 150]

Runs ``mirage --headless --virtual-camera --virtual-microphone --microphone <test microphone>`` in this process
(``run_headless``, as the command does) for ``--seconds`` after it settled, with the measurement of
tests/av_sync_helpers.py: a click train into a null-sink "microphone" while the source flashes white at the click
times, the virtual camera read at pyvirtualcam's boundary, the Mirage Microphone recorded. Only the edges are
stand-ins: the source (a flashing one, through the headless app's source seam), the camera device (a pyvirtualcam
backend) and, with ``--stage-delay-ms``, a stage that holds frames that long at the camera's rate (what a GPU
avatar's networks do to the video; 0 runs the pass-through, where the sound chain's own latency is the floor).
A PulseAudio server of its own is started when none answers.

Prints the offset distribution (each flash to its click: positive when the voice comes after the face), the
voice's delay, underruns and the audio threads' CPU share (the supervisor, the capture and playback threads, and the
sound library's own threads that came with the app's streams, as a percentage of one core over the measured time). ``--json`` writes
``{"offset_ms": {"median", "p95", "max"}, "delay_ms", "underruns", "cpu_percent"}`` (p95 and max of |offset|).
Goals: |offset| P95 <= 15 ms once settled, 0 underruns in 10 minutes, under 2 % of one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from av_sync_helpers import (  # noqa: E402
    CAMERA_BACKEND,
    MIC_SINK,
    MIC_SOURCE,
    ClickTrain,
    FifoDelayStage,
    FlashCamera,
    FlashSource,
    MicRecorder,
    offsets,
    pair_after,
    private_pulseaudio,
    summary_ms,
)

from mirage_desktop import headless, session  # noqa: E402
from mirage_desktop.control import local_engine  # noqa: E402
from mirage_desktop.app import apply_args, build_parser  # noqa: E402
from mirage_desktop.audio.pulse import SOURCE_NAME, SoundServer, SoundServerError  # noqa: E402
from mirage_desktop.config import Settings, load_settings  # noqa: E402
from mirage_desktop.engine.sources import Source  # noqa: E402

PERIOD = 0.4
WARMUP_S = 5.0  # from the app's start to the first click: models, camera, the audio streams
SETTLE_S = 3.0


def sound_server(stack: ExitStack) -> None:
    """Use the running sound server (with the test microphone added for the run), or start one of our own."""
    server = SoundServer()
    try:
        names = [s.name for s in server.sources()]
    except SoundServerError:
        server.close()
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mirage-av-sync-")))
        stack.enter_context(private_pulseaudio(root))
        print("Started a PulseAudio server of our own", flush=True)
        return
    if MIC_SOURCE not in names:
        index = server.load_module("module-null-sink", f"sink_name={MIC_SINK} rate=48000 channels=1 "
                                   "channel_map=mono sink_properties='device.description=\"av_sync test microphone\"'")
        stack.callback(server.unload_module, index)
    stack.callback(server.close)


def cpu_seconds(thread_ids: dict[int, str]) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads() if t.id in thread_ids}


def thread_ids() -> set[int]:
    return {t.id for t in psutil.Process().threads()}


def thread_name(tid: int) -> str:
    """The kernel's name of one of this process's threads (Linux; "" elsewhere): libpulse names its event loop's
    thread "threaded-ml", in the ALSA plugin PortAudio goes through as in the app's own streams."""
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def run(seconds: float, stage_delay: float) -> dict[str, Any]:
    sessions: list[session.Session] = []

    class Recorded(session.Session):  # the headless app's own session, seen from here
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sessions.append(self)

    start = time.perf_counter() + WARMUP_S
    source = FlashSource(start, PERIOD, 640, 360)
    original_build = local_engine.build_engine

    def build_engine(*args: Any, **kwargs: Any) -> Any:
        engine = original_build(*args, **kwargs)
        if stage_delay > 0:
            engine.stages.append(FifoDelayStage(stage_delay))
        return engine

    import pyvirtualcam

    backends = dict(pyvirtualcam.camera.BACKENDS)
    pyvirtualcam.camera.BACKENDS.clear()
    pyvirtualcam.camera.BACKENDS[CAMERA_BACKEND] = FlashCamera
    def make_engine_source(settings: Settings, spec: str | None = None, *, paced: bool = True) -> Source:
        return source

    headless.make_engine_source = make_engine_source
    headless.Session = Recorded  # type: ignore[misc]
    local_engine.build_engine = build_engine
    total = WARMUP_S + SETTLE_S + seconds + 2.0
    argv = ["--headless", "--source", "demo", "--seconds", f"{total:.1f}", "--width", "640", "--height", "360",
            "--virtual-camera", "--virtual-microphone", "--microphone", MIC_SOURCE, "--quiet"]
    args = build_parser().parse_args(argv)
    settings = load_settings(use_file=False)
    apply_args(settings, args)
    code: list[int] = []
    before_app = thread_ids()  # this script's own threads: not the app's
    app = threading.Thread(target=lambda: code.append(headless.run_headless(settings, args)), name="headless")
    app.start()
    try:
        while not (sessions and sessions[0].microphone is not None):
            if not app.is_alive():
                raise SystemExit(f"The headless app ended early (exit code {code}).")
            time.sleep(0.05)
        microphone = sessions[0].microphone
        while microphone.pipe.status != "running" and time.perf_counter() < start:
            time.sleep(0.05)
        # the sound library's event-loop threads the app's streams brought (the measuring streams below bring
        # their own, started later and left out)
        library = {tid: "sound library" for tid in thread_ids() - before_app if thread_name(tid) == "threaded-ml"}
        with MicRecorder(SOURCE_NAME) as recorder, ClickTrain(start, PERIOD) as clicks:
            begin = start + SETTLE_S
            time.sleep(max(0.0, begin - time.perf_counter()))
            underruns_before = microphone.pipe.underruns
            roles = {**library, **microphone.pipe.thread_ids()}
            base = cpu_seconds(roles)  # per thread: its CPU time when first seen
            last = dict(base)
            t0 = time.perf_counter()
            end = begin + seconds
            while time.perf_counter() < end:
                time.sleep(min(1.0, max(0.0, end - time.perf_counter())))
                now_roles = {**library, **microphone.pipe.thread_ids()}  # reconnections bring new ones
                roles.update(now_roles)
                for tid, value in cpu_seconds(now_roles).items():
                    base.setdefault(tid, value)
                    last[tid] = value
            wall = time.perf_counter() - t0
            cpu = {tid: last[tid] - base[tid] for tid in last}
            by_role: dict[str, float] = {}
            for tid, seconds_used in cpu.items():
                by_role[roles[tid]] = by_role.get(roles[tid], 0.0) + seconds_used
            stats = microphone.stats()
            underruns = microphone.pipe.underruns - underruns_before
    finally:
        app.join()
        pyvirtualcam.camera.BACKENDS.clear()
        pyvirtualcam.camera.BACKENDS.update(backends)
    shows = FlashCamera.instances[-1].shows
    measured = [(t, v) for t, v in offsets(clicks.clicks, recorder.arrivals, source.flashes, shows, window=PERIOD)
                if begin <= t < end]
    heard = pair_after(clicks.clicks, recorder.arrivals, PERIOD)
    delays = [a - c for c, a in zip(clicks.clicks, heard) if a is not None and begin <= c < end]
    values = [v for _, v in measured]
    return {
        "offset_ms": summary_ms(values),
        "delay_ms": round(float(np.median(delays)) * 1000.0, 1) if delays else None,
        "underruns": int(underruns),
        "cpu_percent": round(100.0 * sum(cpu.values()) / wall, 2),
        "_cpu_by_thread": {role: round(100.0 * value / wall, 2) for role, value in sorted(by_role.items())},
        "_events": len(values),
        "_expected": int(seconds / PERIOD),
        "_stats": stats,
        "_exit_code": code[0] if code else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long to measure once settled (default 60)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the summary as JSON")
    p.add_argument("--stage-delay-ms", type=float, default=150.0,
                   help="a stage holding frames this long at the camera's rate (0: pass-through; default 150)")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        sound_server(stack)
        result = run(args.seconds, args.stage_delay_ms / 1000.0)
    offset = result["offset_ms"]
    print(f"offset (voice after face) over {result['_events']} of {result['_expected']} events: median "
          f"{offset['median']} ms, |offset| P95 {offset['p95']} ms, max {offset['max']} ms (goal: P95 <= 15 ms)")
    print(f"voice delay {result['delay_ms']} ms; underruns {result['underruns']} (goal 0); audio threads "
          f"{result['cpu_percent']} % of one core (goal < 2 %; by thread: {result['_cpu_by_thread']})")
    print(f"Mirage Microphone at the end: {json.dumps(result['_stats'])}")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
