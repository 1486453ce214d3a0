"""The soak's figures: what it samples while the app runs, the summary it writes, and the judgement.

The judgement is stalls, crashes, fault recoveries and one memory figure: the slope of the quiet per-cycle RSS.
After each viewer cycle the app's asynchronous stage is held between two frames and its free heap pages handed
back (soak_app.py), so every such sample is taken in the same state; the raw RSS samples swing with a CPU
LivePortrait frame's activations (hundreds of MB live most of the time) and are kept only to plot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from soak_launch import App

SAMPLE_S = 5.0  # the app's RSS, threads and handles
STALL_S = 2.0
SLOW_FRAME_LIMIT_S = 120.0  # a stage computing one frame longer than this counts as hung, not slow
WARMUP_S = 60.0  # model loading: not counted in fps_out_min
JUDGE_RSS_MIN = 30.0  # minutes a run needs before its quiet RSS slope is judged


@dataclass
class FaultTally:
    injected: int = 0
    recovered: int = 0
    max_recovery_s: float = 0.0

    def add(self, recovery_s: float | None) -> None:
        self.injected += 1
        if recovery_s is not None:
            self.recovered += 1
            self.max_recovery_s = max(self.max_recovery_s, round(recovery_s, 3))


@dataclass
class Results:
    t_start: float = field(default_factory=time.monotonic)
    rss_mb: list[float] = field(default_factory=list)
    rss_t: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    handles: list[int] = field(default_factory=list)
    fps_windows: list[float] = field(default_factory=list)
    e2e_p95_max: float = 0.0
    faults: dict[str, FaultTally] = field(default_factory=dict)
    #: per fault kind: the longest wait for the stage's first output after it (recovery plus the frame's compute)
    first_output_s: dict[str, float] = field(default_factory=dict)
    stalls: int = 0
    stall_notes: list[str] = field(default_factory=list)
    crashes: int = 0
    slowest_stage_frame_s: float = 0.0
    cycle_rss: list[float] = field(default_factory=list)  # every cycle's RSS (the raw sample when not quiet)
    quiet_rss: list[tuple[float, float]] = field(default_factory=list)  # (t, RSS) of the quiet cycle samples
    viewer_frames: int = 0
    driver_replies: int = 0
    threads_at_end: list[str] = field(default_factory=list)
    interrupted: str = ""  # the signal that ended the run early ("" when it ran its minutes)

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    def stall(self, what: str, app: App) -> None:
        self.stalls += 1
        note = f"t={self.elapsed():.0f}s {what}"
        self.stall_notes.append(note)
        print(f"STALL {note}; stack dump in app.log", flush=True)
        app.dump_stacks()


def process_sample(pid: int) -> tuple[float, int, int] | None:
    """(RSS MB, threads, open descriptors or handles) of a process, on any OS; None once it is gone."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            handles = proc.num_handles() if psutil.WINDOWS else proc.num_fds()
            return round(proc.memory_info().rss / 2**20, 1), proc.num_threads(), handles
    except (psutil.Error, OSError):
        return None


async def monitor(app: App, results: Results) -> None:
    """The app's process figures every SAMPLE_S; fps and end-to-end P95 from its status; stalls: STALL_S without a
    new engine frame while no inline stage is computing one, or without a frame at the virtual camera."""
    pid = app.proc.pid if app.proc else 0
    next_sample = 0.0
    last_out, last_out_t = -1, time.monotonic()
    last_vcam, last_vcam_t = -1, time.monotonic()
    window_start, window_frames = time.monotonic(), None
    stalled_engine = stalled_vcam = False
    while app.alive():
        now = time.monotonic()
        st = app.read_status()
        app.read_events()
        if now >= next_sample:
            next_sample = now + SAMPLE_S
            sample = process_sample(pid)
            if sample is not None:
                results.rss_mb.append(sample[0])
                results.rss_t.append(results.elapsed())
                results.threads.append(sample[1])
                results.handles.append(sample[2])
        if st:
            if st.get("e2e_p95_ms") is not None and results.elapsed() > WARMUP_S:
                results.e2e_p95_max = max(results.e2e_p95_max, float(st["e2e_p95_ms"]))
            out = int(st.get("frames_out", 0))
            if out != last_out:
                last_out, last_out_t, stalled_engine = out, now, False
            gap = now - last_out_t
            busy = st.get("busy_stage")
            status_age = time.time() - float(st.get("t", 0))
            if busy and gap < SLOW_FRAME_LIMIT_S and status_age < STALL_S:
                results.slowest_stage_frame_s = max(results.slowest_stage_frame_s, gap)
            elif gap >= STALL_S and not stalled_engine and results.elapsed() > 5:
                stalled_engine = True
                results.stall(f"engine: no frame for {gap:.1f} s (busy stage: {busy}, status age "
                              f"{status_age:.1f} s)", app)
            vcam = int(st.get("outputs", {}).get("virtual_camera", {}).get("frames_sent", -1))
            if vcam != last_vcam:
                last_vcam, last_vcam_t, stalled_vcam = vcam, now, False
            elif now - last_vcam_t >= STALL_S and not stalled_vcam and vcam >= 0:
                stalled_vcam = True
                results.stall(f"virtual camera: no frame written for {now - last_vcam_t:.1f} s", app)
            if window_frames is None:
                window_start, window_frames = now, out
            elif now - window_start >= 10.0:
                if results.elapsed() > WARMUP_S:
                    results.fps_windows.append((out - window_frames) / (now - window_start))
                window_start, window_frames = now, out
        await asyncio.sleep(0.25)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per second)."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def per_hour(points: list[tuple[float, float]]) -> float | None:
    """The slope in units per hour, from 3 points on; None before."""
    return round(slope(points) * 3600.0, 2) if len(points) >= 3 else None


def summary(results: Results, minutes: float) -> dict[str, Any]:
    """The ``--json`` figures. Slopes count from 5 minutes in (a third of a shorter run): model loading and the
    arenas' first fill come before."""
    cut = min(300.0, minutes * 60.0 / 3)
    return {
        "minutes": round(results.elapsed() / 60.0, 2) if results.interrupted else minutes,
        "rss_mb": results.rss_mb,
        "quiet_rss_slope_mb_per_h": per_hour([p for p in results.quiet_rss if p[0] >= cut]),
        "threads": results.threads,
        "handles": results.handles,
        "fps_out_min": round(min(results.fps_windows), 3) if results.fps_windows else None,
        "e2e_p95_ms_max": round(results.e2e_p95_max, 1),
        "faults": {k: vars(v) for k, v in sorted(results.faults.items())},
        "stalls": results.stalls,
        "crashes": results.crashes,
    }


def judge(figures: dict[str, Any], max_quiet_rss_slope: float) -> list[str]:
    """What failed, one line each; empty when the run passed. The RSS slope is judged from runs of JUDGE_RSS_MIN
    minutes on: over a shorter run the first cycles' fill outweighs any leak."""
    failed = [f"{n} {what}" for n, what in ((figures["crashes"], "crash(es)"), (figures["stalls"], "stall(s)")) if n]
    failed += [f"{name}: {t['recovered']} of {t['injected']} recovered" for name, t in figures["faults"].items()
               if t["recovered"] < t["injected"]]
    rss = figures["quiet_rss_slope_mb_per_h"]
    if figures["minutes"] >= JUDGE_RSS_MIN and rss is not None and rss > max_quiet_rss_slope:
        failed.append(f"quiet RSS grows {rss} MB/h (limit {max_quiet_rss_slope})")
    return failed


def details(results: Results, work: Path, uncaught: list[str]) -> dict[str, Any]:
    """What explains the summary, for ``<workdir>/details.json``."""
    return {"workdir": str(work), "cycle_rss_mb": results.cycle_rss, "quiet_rss_mb": results.quiet_rss,
            "stall_notes": results.stall_notes, "slowest_stage_frame_s": round(results.slowest_stage_frame_s, 1),
            "fault_first_output_s": results.first_output_s, "fps_out_windows": results.fps_windows,
            "viewer_frames": results.viewer_frames, "driver_replies": results.driver_replies,
            "uncaught_in_log": uncaught, "recordings": check_recordings(work),
            "threads_at_end": results.threads_at_end, "interrupted": results.interrupted,
            "minutes_run": round(results.elapsed() / 60.0, 2)}


def check_recordings(work: Path) -> list[str]:
    """Every recording decodes (each one was finished normally or stopped by the full disk)."""
    import av

    notes = []
    for path in sorted(work.glob("rec-*.mp4")):
        n, err = 0, ""
        try:
            with av.open(str(path)) as c:
                for _ in c.decode(video=0):
                    n += 1
        except Exception as exc:  # noqa: BLE001 -- a recording cut by the full disk ends mid-fragment
            err = f" (ends with {type(exc).__name__})"
        notes.append(f"{path.name}: {n} frames{err}")
    return notes
