#!/usr/bin/env python3
"""Soak: the real ``mirage --headless`` in its own process, driven from outside for M minutes under load and faults.

    python benchmarks/soak.py --minutes 60 --json soak.json

The app runs with both stages (the LivePortrait kit's synthetic weights on ONNX Runtime unless ``--backend`` says
otherwise, the geometry kit's stand-in landmark models, the real SCRFD model), the recorder, the virtual camera (a
fake device at pyvirtualcam's backend boundary, tests/vcam_helpers.py) and the HTTP/WebRTC server on 127.0.0.1.
From this process viewers join and leave in cycles and a driving peer sends frames over the data channel
(soak_peers.py), and a scheduler toggles stages, swaps avatar and source and injects faults (soak_chaos.py): bursts
of stage exceptions, a model file truncated then restored, a lost source, a CUDA out-of-memory, a full disk. The
faults are put in by the soak's own code inside the app's process (soak_app.py, wrapping what the engine calls);
the package has no switch for them. Before the first viewer cycle each avatar is prepared and animated once and
every fault injected once (the warm-up).

The run passes with no crash, no stall (2 s without a new engine frame while no stage computes one, or without a
frame at the virtual camera or a viewer; each dumps every thread's stack into app.log), every fault recovered, and,
in runs of 30 minutes or more, the quiet per-cycle RSS growing no faster than ``--max-quiet-rss-slope``
(soak_report.py); the exit code says so.
``--json`` writes {"minutes", "rss_mb", "quiet_rss_slope_mb_per_h", "threads", "handles", "fps_out_min",
"e2e_p95_ms_max", "faults": {name: {"injected", "recovered", "max_recovery_s"}}, "stalls", "crashes"}; the details
(per-cycle RSS, slow stage frames, recordings, where the logs are) go to stdout and ``<workdir>/details.json``.
SIGTERM, SIGINT or SIGHUP end the run early but cleanly: the app is stopped with SIGTERM and the JSON of what was
measured is written (``minutes`` is then the time actually run).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import soak_report
from soak_chaos import Chaos
from soak_launch import REPO, App, Run, prepare
from soak_peers import driver, viewers


async def soak(run: Run) -> None:
    app, results = run.app, run.results
    results.t_start = time.monotonic()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_early(sig: signal.Signals) -> None:  # stop early, but stop cleanly and report
        results.interrupted = sig.name
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop_early, sig)
    app.launch()
    started = await app.until(lambda: stopping.is_set() or app.status.get("frames_out", 0) > 0, 300)
    if stopping.is_set():
        results.crashes += not await app.stop()
        return
    if started is None:
        raise SystemExit(f"the app did not start; see {run.work / 'app.log'}")
    tasks = [asyncio.ensure_future(t) for t in (soak_report.monitor(app, results), viewers(run), driver(run),
                                                Chaos(run).schedule())]
    deadline = results.t_start + run.args.minutes * 60.0
    while time.monotonic() < deadline and not stopping.is_set():
        if not app.alive():
            results.crashes += 1
            print(f"CRASH: the app exited with {app.proc.returncode if app.proc else '?'}; restarting", flush=True)
            app.launch()
            tasks[0].cancel()
            tasks[0] = asyncio.ensure_future(soak_report.monitor(app, results))
        await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    # a peer's close can hang in aiortc: never let one keep the run from stopping the app and reporting
    _, pending = await asyncio.wait(tasks, timeout=15.0)
    if pending:
        print(f"{len(pending)} harness task(s) did not stop within 15 s of the end; going on", flush=True)
    if app.alive():  # a fault cut short by the end of the run: the last recording must finish cleanly
        app.command("disk_full", on=False)
        await asyncio.sleep(0.5)
    results.crashes += not await app.stop()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--workdir", type=Path, help="keep logs, recordings and status here (default: a temp folder)")
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime", "auto"),
                   help="LivePortrait backend of the app (default onnxruntime: it plans a frame's activations once "
                        "in its arena, while PyTorch on a CPU frees and reallocates them every frame, which "
                        "scatters even the quiet samples. The one-time export, minutes on a CPU, is kept in --cache)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mirage-soak-cache",
                   help="where the synthetic LivePortrait weights are written once (520 MB)")
    p.add_argument("--enable", default="scrfd,liveportrait")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--stay", type=float, default=15.0, help="seconds the viewers (and the driver) stay each round")
    p.add_argument("--fault-timeout", type=float, default=90.0, help="seconds a fault may take to recover")
    p.add_argument("--max-quiet-rss-slope", type=float, default=20.0, metavar="MB_PER_H",
                   help="the quiet per-cycle RSS may grow this fast at most (counted from 5 minutes in, judged in "
                        "runs of 30 minutes or more; default 20)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":  # the app's own process: soak.py --child CONTROL ARGS...
        from soak_app import child_main

        return child_main(Path(sys.argv[2]), sys.argv[3:], REPO / "tests")
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` shows where the harness itself is
    args = parse(sys.argv[1:])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mirage-soak-"))
    (work / "ctl").mkdir(parents=True, exist_ok=True)
    for old in (work / "ctl").glob("*"):
        old.unlink()
    assets = prepare(work, args.width, args.height, args.fps, args.cache, "liveportrait" in args.enable)
    run = Run(args, work, assets, App(args, work, assets))
    results = run.results
    try:
        asyncio.run(soak(run))
    finally:  # an error in the harness, or a signal: the summary of what was measured is still written
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the report short
        if run.app.alive() and run.app.proc is not None:
            run.app.proc.kill()
        uncaught = run.app.uncaught_in_log()
        results.crashes += len(uncaught)
        figures = soak_report.summary(results, args.minutes)
        if args.json:  # first: decoding the recordings below takes a while after a long run
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(figures, indent=2))
            os.replace(tmp, args.json)
    if results.interrupted:
        print(f"stopped early by {results.interrupted} after {results.elapsed() / 60:.1f} min", flush=True)
    details = soak_report.details(results, work, uncaught)
    (work / "details.json").write_text(json.dumps(details, indent=2))
    brief = {k: v for k, v in figures.items() if k not in ("rss_mb", "threads", "handles")}
    brief.update(rss_first_last_mb=figures["rss_mb"][:1] + figures["rss_mb"][-1:],
                 threads_min_max=[min(results.threads, default=0), max(results.threads, default=0)],
                 handles_min_max=[min(results.handles, default=0), max(results.handles, default=0)])
    print(json.dumps(brief, indent=2))
    print(json.dumps({k: v for k, v in details.items() if k != "fps_out_windows"}, indent=2))
    failed = soak_report.judge(figures, args.max_quiet_rss_slope)
    for line in failed:
        print(f"FAILED: {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
