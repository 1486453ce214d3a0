#!/usr/bin/env python3
"""Soak: the real ``mirage --headless`` in its own process, driven from outside for M minutes under load and faults.

    python benchmarks/soak.py --minutes 60 --json soak.json

The app starts as ``mirage`` does (restarted on jemalloc where the system has it) and runs with both stages (the
LivePortrait kit's synthetic weights on ONNX Runtime unless ``--backend`` says otherwise, and the geometry kit's
stand-in landmark models, the real SCRFD model), the recorder, the
virtual camera (a fake device registered at pyvirtualcam's backend boundary, tests/vcam_helpers.py) and the
HTTP/WebRTC server on 127.0.0.1. From this process: 4 aiortc viewers join and leave in cycles, a driving peer sends
``image_jpeg_base64`` frames over the data channel, and a scheduler toggles stages, swaps avatar and source and
injects faults through the app's test-only switch (``MIRAGE_FAULTS``, mirage_desktop/engine/faults.py): bursts of
stage exceptions, a model file truncated then restored, a source that disappears and comes back, a CUDA
out-of-memory, a recorder whose disk fills. It samples RSS, threads and descriptors from /proc, fps and end-to-end
P95 from the app's status, and counts stalls: 2 s without a new engine frame while no stage is computing one, or
without a frame at the virtual camera or at a connected viewer; each stall dumps every thread's stack (SIGUSR1)
into the app's log. Before the first viewer cycle each avatar is prepared and animated once and every fault is
injected once (the warm-up), so the per-cycle RSS starts from ONNX Runtime's arenas at their peak.

``--json`` writes exactly {"minutes", "rss_mb", "rss_slope_mb_per_h", "threads", "fds", "fps_out_min",
"e2e_p95_ms_max", "faults": {name: {"injected", "recovered", "max_recovery_s"}}, "stalls", "crashes"}; the
details (per-cycle RSS, slow stage frames, where the logs are) go to stdout and ``<workdir>/details.json``.
A fault's recovery is the time from its end until the app works normally again: for a stage burst or an
out-of-memory, until the stage starts the call that succeeds (so a backoff, a reload or a wedged worker counts);
``fault_first_output_s`` in details.json adds that frame's compute time (on a 2-core CPU, 12-50 s of LivePortrait).
SIGTERM, SIGINT or SIGHUP end the run early but cleanly: the app is stopped with SIGTERM and the JSON of what was
measured is written (``minutes`` is then the time actually run), before the recordings are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import faulthandler
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TOKEN = "soak-token-0123456789abcdef"
SAMPLE_S = 5.0  # /proc sampling period
STALL_S = 2.0
SLOW_FRAME_LIMIT_S = 120.0  # a stage computing one frame longer than this counts as hung, not slow
#: Classes counted in the app after every viewer cycle (all peers gone): what should not grow.
CENSUS_TYPES = ["RTCPeerConnection", "RTCRtpSender", "RTCRtpReceiver", "RTCDataChannel", "RTCSctpTransport",
                "RTCDtlsTransport", "RTCIceTransport", "Peer", "EngineVideoTrack", "PeerSource", "Vp8Encoder",
                "H264Encoder", "VideoFrame", "Frame", "ndarray", "Task", "Future", "socket"]
CENSUS_HOLD_S = 90.0  # the longest wait for the asynchronous stage's frame in flight before a cycle's RSS
WARMUP_S = 60.0  # model loading: not counted in fps_out_min


# ------------------------------------------------------------------------------------------------ the app process
def child_main(argv: list[str]) -> int:
    """Inside the app's process: start as ``mirage`` does (restarted on jemalloc), put the fake device behind
    pyvirtualcam, then run the real entry point."""
    from mirage_desktop.engine.host_memory import restart_on_jemalloc

    restart_on_jemalloc()  # as main() does when run as a program: this process, restarted once
    sys.path.insert(0, str(REPO / "tests"))
    import pyvirtualcam
    from vcam_helpers import BACKEND_NAME, FakeDeviceBackend

    class SoakDevice(FakeDeviceBackend):
        keep = 1

        def send(self, frame: Any) -> None:
            super().send(frame)
            if len(self.times) > 64:  # the test double keeps every write time; an hour of them is not our leak
                del self.times[:-32]

    pyvirtualcam.camera.BACKENDS.clear()
    pyvirtualcam.camera.BACKENDS[BACKEND_NAME] = SoakDevice
    from mirage_desktop.app import main

    return main(argv)


# ------------------------------------------------------------------------------------------------------ set-up
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(work: Path, width: int, height: int, fps: float, cache: Path, liveportrait: bool) -> dict[str, Path]:
    """Model folder (synthetic LivePortrait weights linked, our own copy of SCRFD to break), a clip, portraits."""
    import cv2

    weights = cache / "liveportrait_synth"
    if liveportrait and not (weights / "spade_generator.pth").exists():
        print(f"writing the kit's synthetic LivePortrait weights to {weights} (once) ...", flush=True)
        subprocess.run([sys.executable, str(SHARED / "liveportrait" / "synth_weights.py"), str(weights)], check=True)
    models = work / "models"
    tree = {"stitching_retargeting_module.pth": "retargeting_models"}
    for w in weights.glob("*.pth"):
        target = models / "liveportrait" / tree.get(w.name, "base_models") / w.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(w)
    if liveportrait:  # the avatar crops with the two landmark networks: the geometry kit's stand-ins
        marks = cache / "landmarks"
        if not ((marks / "2d106det.onnx").exists() and (marks / "landmark.onnx").exists()):
            subprocess.run([sys.executable, str(SHARED / "liveportrait" / "geometry" / "synth_landmark_models.py"),
                            str(marks)], check=True)
        sys.path.insert(0, str(REPO))
        from mirage_desktop.models.registry import landmark_paths

        for name, target in landmark_paths(models).items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(marks / name)
    scrfd = models / "scrfd" / "scrfd_2.5g_bnkps.onnx"
    scrfd.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED / "models" / "scrfd_2.5g.onnx", scrfd)

    sys.path.insert(0, str(REPO))
    from mirage_desktop.engine.sources import DemoSource

    clip = work / "clip.mp4"
    import av

    demo = DemoSource(width, height, fps, paced=False)
    demo.open()
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(6 * fps)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(demo.read(), format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    astronaut = SHARED / "media" / "astronaut.png"
    mirrored = work / "astronaut_mirrored.png"
    cv2.imwrite(str(mirrored), cv2.flip(cv2.imread(str(astronaut)), 1))
    (work / "settings.json").write_text(json.dumps({"max_peers": 6}))
    return {"models": models, "scrfd": scrfd, "clip": clip, "avatar_a": astronaut, "avatar_b": mirrored,
            "image": astronaut}


# ------------------------------------------------------------------------------------------------------ the run
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
class Soak:
    args: argparse.Namespace
    work: Path
    assets: dict[str, Path]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None
    seq: int = 0
    events_pos: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    rss_t: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    fps_windows: list[float] = field(default_factory=list)
    e2e_p95_max: float = 0.0
    faults: dict[str, FaultTally] = field(default_factory=dict)
    #: per stage fault kind: the longest wait for the stage's first output after the fault (its recovery plus the
    #: frame's own compute time), in details.json beside the recoveries
    first_output_s: dict[str, float] = field(default_factory=dict)
    #: the app's own view of its memory (glibc heap in use / free, trims) beside each RSS sample: a leak grows
    #: "in use", fragmentation grows "free"
    heap: list[dict[str, Any]] = field(default_factory=list)
    stalls: int = 0
    stall_notes: list[str] = field(default_factory=list)
    crashes: int = 0
    slowest_stage_frame_s: float = 0.0
    cycle_rss: list[float] = field(default_factory=list)
    quiet_rss: list[tuple[float, float]] = field(default_factory=list)  # (t, RSS) of the quiet cycle samples
    viewer_frames: int = 0
    driver_replies: int = 0
    t_start: float = 0.0
    recording: int = 0
    census: list[dict[str, int]] = field(default_factory=list)
    thread_names: list[str] = field(default_factory=list)
    source_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    warmed: asyncio.Event = field(default_factory=asyncio.Event)  # the warm-up is over: the viewer cycles may start
    interrupted: str = ""  # the signal that ended the run early ("" when it ran its minutes)

    # ------------------------------------------------------------------------------------------ app process
    def launch(self) -> None:
        a = self.args
        self.port = free_port()
        env = dict(os.environ)
        env.update({"PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                    "MIRAGE_FAULTS": str(self.work / "ctl"), "MIRAGE_LOG_DIR": str(self.work / "logs"),
                    "QT_QPA_PLATFORM": "offscreen",
                    # an "auto" backend exports and measures once per machine: keep that in the soak's cache
                    "MIRAGE_CACHE_DIR": str(a.cache / "backends")})
        for var in ("MIRAGE_ENABLE_SCRFD", "MIRAGE_ENABLE_LIVEPORTRAIT", "MIRAGE_SOURCE", "MIRAGE_AVATAR"):
            env.pop(var, None)
        self.recording += 1
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--headless",
               "--source", str(self.assets["clip"]), "--enable", a.enable, "--models-dir", str(self.assets["models"]),
               "--width", str(a.width), "--height", str(a.height), "--fps", str(a.fps),
               "--record", str(self.work / f"rec-{self.recording}.mp4"), "--virtual-camera",
               "--http-port", str(self.port), "--token", TOKEN, "--stats-json", str(self.work / "final.json"),
               "--settings", str(self.work / "settings.json"), "--quiet", "--device", "cpu",
               "--backend", a.backend]
        self.log = open(self.work / "app.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        print(f"app pid {self.proc.pid} on port {self.port}; log {self.work / 'app.log'}", flush=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, op: str, **fields: Any) -> None:
        self.seq += 1
        ctl = self.work / "ctl"
        tmp = ctl / f"tmp-{self.seq:06d}"
        tmp.write_text(json.dumps({"op": op, **fields}))
        os.replace(tmp, ctl / f"cmd-{self.seq:06d}.json")

    def read_events(self) -> None:
        path = self.work / "ctl" / "events.jsonl"
        try:
            with open(path, encoding="utf-8") as f:
                f.seek(self.events_pos)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self.events_pos += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            if line.strip():
                self.events.append(json.loads(line))

    def read_status(self) -> dict[str, Any]:
        try:
            self.status = json.loads((self.work / "ctl" / "status.json").read_text())
        except (OSError, ValueError):
            pass
        return self.status

    async def until(self, cond: Any, timeout: float, step: float = 0.1) -> float | None:
        """Seconds until ``cond()`` holds, or None after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.read_status()
            self.read_events()
            if cond():
                return time.monotonic() - t0
            await asyncio.sleep(step)
        return None

    def stage(self, name: str) -> dict[str, Any]:
        return self.status.get("stages", {}).get(name, {})

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    # ------------------------------------------------------------------------------------------ monitoring
    async def sampler(self) -> None:
        pid = self.proc.pid if self.proc else 0
        next_proc = 0.0
        last_out, last_out_t = -1, time.monotonic()
        last_vcam, last_vcam_t = -1, time.monotonic()
        window_start, window_frames = time.monotonic(), None
        stalled_engine = stalled_vcam = False
        while True:
            now = time.monotonic()
            if not self.alive():
                return
            st = self.read_status()
            self.read_events()
            if now >= next_proc:
                next_proc = now + SAMPLE_S
                sample = proc_sample(pid)
                if st.get("host_memory"):
                    self.heap.append({"t": round(self.elapsed(), 1), **st["host_memory"]})
                if sample is not None:
                    self.rss_mb.append(sample[0])
                    self.rss_t.append(self.elapsed())
                    self.threads.append(sample[1])
                    self.fds.append(sample[2])
            if st:
                if st.get("e2e_p95_ms") is not None and self.elapsed() > WARMUP_S:
                    self.e2e_p95_max = max(self.e2e_p95_max, float(st["e2e_p95_ms"]))
                out = int(st.get("frames_out", 0))
                if out != last_out:
                    last_out, last_out_t, stalled_engine = out, now, False
                gap = now - last_out_t
                busy = st.get("busy_stage")
                status_age = time.time() - float(st.get("t", 0))
                if busy and gap < SLOW_FRAME_LIMIT_S and status_age < STALL_S:
                    self.slowest_stage_frame_s = max(self.slowest_stage_frame_s, gap)
                elif gap >= STALL_S and not stalled_engine and self.elapsed() > 5:
                    stalled_engine = True
                    self.stall(f"engine: no frame for {gap:.1f} s (busy stage: {busy}, status age {status_age:.1f} s)")
                vcam = int(st.get("outputs", {}).get("virtual_camera", {}).get("frames_sent", -1))
                if vcam != last_vcam:
                    last_vcam, last_vcam_t, stalled_vcam = vcam, now, False
                elif now - last_vcam_t >= STALL_S and not stalled_vcam and vcam >= 0:
                    stalled_vcam = True
                    self.stall(f"virtual camera: no frame written for {now - last_vcam_t:.1f} s")
                if window_frames is None:
                    window_start, window_frames = now, out
                elif now - window_start >= 10.0:
                    if self.elapsed() > WARMUP_S:
                        self.fps_windows.append((out - window_frames) / (now - window_start))
                    window_start, window_frames = now, out
            await asyncio.sleep(0.25)

    def stall(self, what: str) -> None:
        self.stalls += 1
        note = f"t={self.elapsed():.0f}s {what}"
        self.stall_notes.append(note)
        print(f"STALL {note}; stack dump in app.log", flush=True)
        if self.alive() and self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)

    # ------------------------------------------------------------------------------------------------ peers
    async def viewers(self) -> None:
        """Cycles of 4 viewers joining, watching ``--stay`` seconds, leaving; RSS noted after each cycle."""
        import aiohttp

        await self.warmed.wait()
        async with aiohttp.ClientSession() as http:
            while True:
                clients = await asyncio.gather(*(self.connect(http, viewer=True) for _ in range(self.args.peers)),
                                               return_exceptions=True)
                ok = [c for c in clients if isinstance(c, Viewer)]
                for c in clients:
                    if not isinstance(c, Viewer):
                        print(f"viewer failed to connect: {c!r}", flush=True)
                await asyncio.sleep(self.args.stay)
                for c in ok:
                    if c.max_gap >= STALL_S:
                        self.stall(f"viewer {c.id}: {c.max_gap:.1f} s between frames")
                    self.viewer_frames += c.frames
                await asyncio.gather(*(c.leave(http, self.url) for c in ok), return_exceptions=True)
                await asyncio.sleep(3.0)
                tag = f"census#{len(self.cycle_rss) + 1}"
                # the app parks its asynchronous stages between frames and trims its heap first, so every
                # cycle's RSS is taken in the same state (a CPU LivePortrait frame in flight holds hundreds of MB)
                self.command("census", name=tag, types=CENSUS_TYPES, hold_s=CENSUS_HOLD_S)
                census = None
                if await self.until(lambda: any(e["name"] == tag for e in self.events), CENSUS_HOLD_S + 10) is not None:
                    census = next(e for e in self.events if e["name"] == tag)
                    self.census.append({k: v for k, v in census["counts"].items() if v})
                    self.thread_names = census["threads"]
                quiet = census is not None and census.get("held") and census.get("rss_mb") is not None
                if quiet or self.rss_mb:
                    rss = float(census["rss_mb"]) if quiet else self.rss_mb[-1]
                    self.cycle_rss.append(rss)
                    if quiet:
                        self.quiet_rss.append((self.elapsed(), rss))
                    print(f"t={self.elapsed():.0f}s cycle {len(self.cycle_rss)}: {len(ok)} viewers, "
                          f"RSS {rss:.0f} MB{' (quiet)' if quiet else ''}, threads {self.threads[-1]}, "
                          f"fds {self.fds[-1]}; live {self.census[-1] if self.census else '?'}", flush=True)

    @property
    def stages(self) -> list[str]:
        return [s for s in ("scrfd", "liveportrait") if s in self.args.enable.split(",")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def connect(self, http: Any, viewer: bool) -> Viewer:
        client = Viewer(viewer)
        await client.join(http, self.url)
        return client

    async def driver(self) -> None:
        """A peer that drives the engine over the data channel for a while, then falls silent (the server gives
        the engine back after 5 s), again and again. Holds the source lock while it drives."""
        import aiohttp
        import cv2
        from mirage_desktop.engine.sources import DemoSource

        demo = DemoSource(self.args.width, self.args.height, self.args.fps, paced=False)
        demo.open()
        async with aiohttp.ClientSession() as http:
            while True:
                async with self.source_lock:
                    try:
                        client = await self.connect(http, viewer=False)
                        await asyncio.wait_for(client.channel_open.wait(), 20)
                        t_end = time.monotonic() + self.args.stay
                        seq = 0
                        while time.monotonic() < t_end:
                            ok, jpg = cv2.imencode(".jpg", demo.read(), [cv2.IMWRITE_JPEG_QUALITY, 80])
                            client.channel.send(json.dumps({"type": "frame", "seq": seq,
                                                            "image_jpeg_base64": base64.b64encode(jpg).decode()}))
                            seq += 1
                            await asyncio.sleep(0.2)
                        self.driver_replies += client.replies
                        await client.leave(http, self.url)
                    except Exception as exc:  # noqa: BLE001 -- counted in the log; the soak goes on
                        print(f"driver round failed: {exc!r}", flush=True)
                    await asyncio.sleep(6.0)  # the server's driver silence timeout, then the base source is back
                await asyncio.sleep(self.args.stay / 2)

    # -------------------------------------------------------------------------------------------- scheduler
    async def chaos(self) -> None:
        """Random user actions and faults, one at a time; every fault kind comes round early in the run."""
        rng = random.Random(self.args.seed)
        faults = ["stage_burst", "cuda_oom", "model_truncated", "source_lost", "disk_full"]
        actions = ["toggle", "avatar", "source"]
        order = faults[:]
        rng.shuffle(order)
        await self.until(lambda: all(self.stage(s).get("ready") for s in self.stages), 300)
        print(f"t={self.elapsed():.0f}s models loaded", flush=True)
        await self.warm_up()
        while True:
            name = order.pop(0) if order else rng.choice(faults + actions)
            t0 = time.monotonic()
            try:
                recovery = await getattr(self, f"do_{name}")(rng)
            except Exception as exc:  # noqa: BLE001
                print(f"{name} failed in the harness: {exc!r}", flush=True)
                recovery = None
            if name in faults:
                self.faults.setdefault(name, FaultTally()).add(recovery)
                print(f"t={self.elapsed():.0f}s fault {name}: "
                      f"{'recovered in %.2f s' % recovery if recovery is not None else 'NOT recovered'} "
                      f"(took {time.monotonic() - t0:.0f} s)", flush=True)
            if not order and not self.warmed.is_set():
                print(f"t={self.elapsed():.0f}s warm-up: every fault once; the viewer cycles start", flush=True)
                self.warmed.set()
            await asyncio.sleep(0.5 if order else rng.uniform(2.0, 5.0))  # every fault once, early

    async def warm_up(self) -> None:
        """Prepare each avatar once and animate it; the chaos then injects every fault once, and only then do the
        viewer cycles start. The first portraits, frames and failed calls after start grow ONNX Runtime's arenas to
        their peak once (about 100 MB of heap, kept for reuse, never again); counted from before that, the cycles
        would measure the arenas' first fill, not what peers leave behind."""
        if "liveportrait" in self.stages:
            for key in ("avatar_b", "avatar_a"):
                seen = len(self.events)
                self.command("avatar", path=str(self.assets[key]))
                took = await self.until(lambda: any(e["name"] == "avatar" and e["event"] in ("done", "error")
                                                    for e in self.events[seen:]), 300)
                print(f"t={self.elapsed():.0f}s warm-up: {key} "
                      f"{'prepared in %.1f s' % took if took is not None else 'NOT prepared in 300 s'}", flush=True)
            frames = self.stage("liveportrait").get("frames", 0)  # the frame in flight may be the old avatar's
            took = await self.until(lambda: self.stage("liveportrait").get("frames", 0) >= frames + 2, 300)
            done = f"2 frames animated in {took:.0f} s" if took is not None else "NOT 2 frames animated in 300 s"
            print(f"t={self.elapsed():.0f}s warm-up: {done}", flush=True)

    async def ensure_on(self, stage: str) -> None:
        if not self.stage(stage).get("enabled"):
            self.command("enable", stage=stage, on=True)
        await self.until(lambda: self.stage(stage).get("enabled") and self.stage(stage).get("ready"), 120)

    async def burst(self, stage: str, op: str, count: int) -> float | None:
        await self.ensure_on(stage)
        tag = f"{op}:{stage}#{self.seq + 1}"
        self.command(op, stage=stage, count=count, name=tag)
        done = await self.until(lambda: any(e["name"] == tag and e["event"] == "recovered" for e in self.events),
                                self.args.fault_timeout)
        if done is None:
            return None
        event = next(e for e in self.events if e["name"] == tag and e["event"] == "recovered")
        first = float(event.get("first_output_s", event["recovery_s"]))
        self.first_output_s[op] = max(self.first_output_s.get(op, 0.0), first)
        return float(event["recovery_s"])

    async def do_stage_burst(self, rng: random.Random) -> float | None:
        async with self.stage_lock:
            return await self.burst(rng.choice(self.stages), "stage_burst", rng.randint(1, 4))

    async def do_cuda_oom(self, rng: random.Random) -> float | None:
        async with self.stage_lock:
            # torch raises it in LivePortrait on a GPU; with LivePortrait off, the detector stands in
            target = "liveportrait" if "liveportrait" in self.stages else self.stages[0]
            return await self.burst(target, "cuda_oom", 1)

    async def do_model_truncated(self, rng: random.Random) -> float | None:
        """Half the SCRFD file goes missing and the stage reloads it (the load fails, frames pass through);
        the file comes back and the stage reloads again: recovered once it runs again."""
        async with self.stage_lock:
            await self.ensure_on("scrfd")
            path = self.assets["scrfd"]
            good = path.read_bytes()
            path.write_bytes(good[: len(good) // 2])
            self.command("reset_stage", stage="scrfd")
            broken = await self.until(lambda: not self.stage("scrfd").get("ready")
                                      and self.stage("scrfd").get("reason") not in ("", "loading...", "off"),
                                      self.args.fault_timeout)
            path.write_bytes(good)
            if broken is None:
                print(f"the truncated model was not reported: {self.stage('scrfd')}", flush=True)
                return None
            print(f"  truncated SCRFD reported: {self.stage('scrfd').get('reason')}", flush=True)
            self.command("reset_stage", stage="scrfd")
            return await self.until(lambda: self.stage("scrfd").get("ready") and not self.stage("scrfd").get("reason"),
                                    self.args.fault_timeout)

    def source_is(self, prefix: str) -> bool:
        return str(self.status.get("source", "")).startswith(prefix)

    async def do_source_lost(self, rng: random.Random) -> float | None:
        """The camera vanishes (SourceLost: the engine falls back to the demo) and comes back (chosen again)."""
        async with self.source_lock:
            clip = str(self.assets["clip"])
            if not self.source_is("video:"):
                self.command("source", spec=clip, width=self.args.width, height=self.args.height)
                await self.until(lambda: self.source_is("video:"), 30)
            await asyncio.sleep(1.0)  # the capture thread has taken any pending switch
            self.command("source_lost")
            if await self.until(lambda: self.source_is("demo"), self.args.fault_timeout) is None:
                return None
            await asyncio.sleep(1.0)
            frames_in = int(self.status.get("frames_in", 0))
            self.command("source", spec=clip, width=self.args.width, height=self.args.height)
            return await self.until(lambda: self.source_is("video:") and int(self.status.get("frames_in", 0))
                                    > frames_in + 2, self.args.fault_timeout)

    async def do_disk_full(self, rng: random.Random) -> float | None:
        """The disk fills under the recorder: it stops with the reason while the video goes on; once space is
        back a new recording starts. Recovered = the video never stopped and the new recording writes."""
        self.command("disk_full", on=True)
        reported = await self.until(lambda: "disk is full" in str(
            self.status.get("outputs", {}).get("recorder", {}).get("error")), self.args.fault_timeout)
        if reported is None:
            self.command("disk_full", on=False)
            return None
        out = int(self.status.get("frames_out", 0))
        flowing = await self.until(lambda: int(self.status.get("frames_out", 0)) > out, self.args.fault_timeout)
        self.command("disk_full", on=False)
        self.recording += 1
        t0 = time.monotonic()
        self.command("record", path=str(self.work / f"rec-{self.recording}.mp4"))
        rec = lambda: self.status.get("outputs", {}).get("recorder", {})  # noqa: E731
        writing = await self.until(lambda: rec().get("error") is None and rec().get("frames_written", 0) > 0
                                   and rec().get("path", "").endswith(f"rec-{self.recording}.mp4"),
                                   self.args.fault_timeout)
        if flowing is None or writing is None:
            return None
        return time.monotonic() - t0

    async def do_toggle(self, rng: random.Random) -> None:
        async with self.stage_lock:
            stage = rng.choice(self.stages)
            self.command("enable", stage=stage, on=False)
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            self.command("enable", stage=stage, on=True)

    async def do_avatar(self, rng: random.Random) -> None:
        self.command("avatar", path=str(self.assets[rng.choice(["avatar_a", "avatar_b"])]))

    async def do_source(self, rng: random.Random) -> None:
        async with self.source_lock:
            spec = rng.choice(["demo", str(self.assets["image"])])
            self.command("source", spec=spec, width=self.args.width, height=self.args.height)
            await asyncio.sleep(rng.uniform(3.0, 8.0))
            self.command("source", spec=str(self.assets["clip"]), width=self.args.width, height=self.args.height)

    # ------------------------------------------------------------------------------------------------ main
    async def run(self) -> None:
        self.t_start = time.monotonic()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # stop early, but stop cleanly and report
            loop.add_signal_handler(sig, lambda sig=sig: (setattr(self, "interrupted", sig.name), stopping.set()))
        self.launch()
        ok = await self.until(lambda: stopping.is_set() or (bool(self.status) and self.status.get("frames_out", 0) > 0),
                              300)
        if stopping.is_set():
            await self.stop_app()
            return
        if ok is None:
            raise SystemExit(f"the app did not start; see {self.work / 'app.log'}")
        tasks = [asyncio.ensure_future(t) for t in (self.sampler(), self.viewers(), self.driver(), self.chaos())]
        deadline = self.t_start + self.args.minutes * 60.0
        while time.monotonic() < deadline and not stopping.is_set():
            if not self.alive():
                self.crashes += 1
                print(f"CRASH: the app exited with {self.proc.returncode if self.proc else '?'}; restarting",
                      flush=True)
                self.launch()
                tasks[0].cancel()
                tasks[0] = asyncio.ensure_future(self.sampler())
            await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        # a peer's close can hang in aiortc: never let one keep the run from stopping the app and reporting
        _, pending = await asyncio.wait(tasks, timeout=15.0)
        if pending:
            print(f"{len(pending)} harness task(s) did not stop within 15 s of the end; going on", flush=True)
        if self.alive():  # a fault cut short by the end of the run: the last recording must finish cleanly
            self.command("disk_full", on=False)
            await asyncio.sleep(0.5)
        await self.stop_app()

    async def stop_app(self) -> None:
        if not self.alive() or self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(1200):
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            print("the app did not stop within 120 s of SIGTERM; killing it", flush=True)
            self.proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(1.0)
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode != 0:
            self.crashes += 1
            print(f"CRASH: exit code {self.proc.returncode} after SIGTERM", flush=True)

    def uncaught_in_log(self) -> list[str]:
        try:
            text = (self.work / "app.log").read_text(errors="replace")
        except OSError:  # stopped before the app was launched
            return []
        needles = ("Exception in thread", "Fatal Python error", "Segmentation fault")
        return [line for line in text.splitlines() if any(n in line for n in needles)]

    def growth(self) -> dict[str, float | None]:
        """Slopes (per hour, after the first 5 minutes) of what should not grow, beside the raw RSS one: the quiet
        per-cycle RSS (stage parked, heap trimmed), the C heap in use and Python's own object blocks (its arenas are
        outside the C heap's figures), the file-backed resident pages (library code touched late), the heap's resident
        pages and what neither holds; a leak raises the RSS ones and one of the others, heap churn between two trims
        only the raw one."""
        cut = self.slope_cut()

        def series(value: Callable[[dict[str, Any]], float]) -> list[tuple[float, float]]:
            out = []
            for h in self.heap:
                try:
                    out.append((float(h["t"]), float(value(h))))
                except (KeyError, TypeError):  # a figure this allocator does not report
                    continue
            return [p for p in out if p[0] >= cut]

        def per_hour(points: list[tuple[float, float]], digits: int | None = 2) -> float | None:
            return round(slope(points) * 3600.0, digits) if len(points) >= 3 else None

        # outside: what neither the heap nor a file holds (Python's arenas, thread stacks, other anonymous mmaps);
        # pages the heap counts but nothing touched offset it below zero, its slope is what counts
        return {"rss_file_slope_mb_per_h": per_hour(series(lambda h: h["rss_file_mb"])),
                "heap_resident_slope_mb_per_h": per_hour(series(lambda h: h["heap_resident_mb"])),
                "outside_heap_slope_mb_per_h": per_hour(
                    series(lambda h: h["rss_mb"] - h["rss_file_mb"] - h["heap_resident_mb"])),
                "quiet_rss_slope_mb_per_h": per_hour([p for p in self.quiet_rss if p[0] >= cut]),
                "heap_in_use_slope_mb_per_h": per_hour(series(lambda h: h["heap_in_use_mb"])),
                "python_blocks_slope_per_h": per_hour(series(lambda h: h["python_blocks"]), None)}

    def slope_cut(self) -> float:
        return min(300.0, self.args.minutes * 60.0 / 3)  # the hour's goal counts after 5 minutes

    def summary(self) -> dict[str, Any]:
        cut = self.slope_cut()
        pts = [(t, r) for t, r in zip(self.rss_t, self.rss_mb) if t >= cut]
        return {
            "minutes": round(self.elapsed() / 60.0, 2) if self.interrupted else self.args.minutes,
            "rss_mb": self.rss_mb,
            "rss_slope_mb_per_h": round(slope(pts) * 3600.0, 2) if len(pts) >= 3 else None,
            "threads": self.threads,
            "fds": self.fds,
            "fps_out_min": round(min(self.fps_windows), 3) if self.fps_windows else None,
            "e2e_p95_ms_max": round(self.e2e_p95_max, 1),
            "faults": {k: vars(v) for k, v in sorted(self.faults.items())},
            "stalls": self.stalls,
            "crashes": self.crashes,
        }


class Viewer:
    """An aiortc peer on 127.0.0.1: a viewer (receives the avatar video) or the driver (data channel too)."""

    def __init__(self, viewer: bool) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.id = ""
        self.frames = 0
        self.replies = 0
        self.max_gap = 0.0
        self.last_t: float | None = None
        self.channel_open = asyncio.Event()
        self.pc.addTransceiver("video", direction="recvonly")
        self.channel = None if viewer else self.pc.createDataChannel("mirage")
        if self.channel is not None:
            self.channel.on("open", self.channel_open.set)
            self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self._pump: asyncio.Task[None] | None = None

    def _on_message(self, message: Any) -> None:
        if '"type": "frame"' in message[:40]:
            self.replies += 1

    def _on_track(self, track: Any) -> None:
        async def pump() -> None:
            from aiortc.mediastreams import MediaStreamError

            try:
                while True:
                    await track.recv()
                    now = time.monotonic()
                    if self.last_t is not None:
                        self.max_gap = max(self.max_gap, now - self.last_t)
                    self.last_t = now
                    self.frames += 1
            except (MediaStreamError, asyncio.CancelledError):
                pass

        self._pump = asyncio.ensure_future(pump())

    async def join(self, http: Any, url: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        resp = await http.post(url + "webrtc/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        if resp.status != 200:
            await self.pc.close()
            raise RuntimeError(f"offer refused: {resp.status} {await resp.text()}")
        body = await resp.json()
        self.id = body["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))

    async def leave(self, http: Any, url: str) -> None:
        self.last_t = None  # the gap while hanging up is not a stall
        try:
            await http.delete(url + f"webrtc/connections/{self.id}", headers={"Authorization": f"Bearer {TOKEN}"})
        finally:
            if self._pump is not None:
                self._pump.cancel()
            await self.pc.close()


def proc_sample(pid: int) -> tuple[float, int, int] | None:
    """(RSS MB, threads, open descriptors) of a process, from /proc (Linux)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":" in line)
        rss = int(fields["VmRSS"].split()[0]) / 1024.0
        threads = int(fields["Threads"])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return round(rss, 1), threads, fds
    except (OSError, KeyError, ValueError):
        return None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per second)."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


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


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` shows where the harness itself is
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--workdir", type=Path, help="keep logs, recordings and status here (default: a temp folder)")
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime", "auto"),
                   help="LivePortrait backend of the app (default onnxruntime: it plans a frame's activations once "
                        "in its arena, so the raw RSS samples show the app's memory; PyTorch on a CPU frees and "
                        "reallocates about 650 MB of them every frame, which scatters the samples by 120 MB. The "
                        "one-time export, minutes on a CPU, is kept in --cache, as auto's measurements are)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mirage-soak-cache",
                   help="where the synthetic LivePortrait weights are written once (520 MB)")
    p.add_argument("--enable", default="scrfd,liveportrait")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--stay", type=float, default=15.0, help="seconds the viewers (and the driver) stay each round")
    p.add_argument("--fault-timeout", type=float, default=90.0, help="seconds a fault may take to recover")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mirage-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "ctl").mkdir(exist_ok=True)
    for old in (work / "ctl").glob("*"):
        old.unlink()
    assets = prepare(work, args.width, args.height, args.fps, args.cache, "liveportrait" in args.enable)
    soak = Soak(args, work, assets)
    try:
        asyncio.run(soak.run())
    finally:  # an error in the harness, or a signal: the summary of what was measured is still written
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the report short
        if soak.alive() and soak.proc is not None:
            soak.proc.kill()
        uncaught = soak.uncaught_in_log()
        soak.crashes += len(uncaught)
        summary = soak.summary()
        if args.json:  # first: decoding the recordings below takes a while after a long run
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2))
            os.replace(tmp, args.json)
    if soak.interrupted:
        print(f"stopped early by {soak.interrupted} after {soak.elapsed() / 60:.1f} min", flush=True)
    details = {"workdir": str(work), "cycle_rss_mb": soak.cycle_rss, "stall_notes": soak.stall_notes,
               "slowest_stage_frame_s": round(soak.slowest_stage_frame_s, 1),
               "fault_first_output_s": soak.first_output_s, **soak.growth(), "host_memory": soak.heap, "fps_out_windows": soak.fps_windows,
               "viewer_frames": soak.viewer_frames, "driver_replies": soak.driver_replies,
               "uncaught_in_log": uncaught, "recordings": check_recordings(work), "census_per_cycle": soak.census,
               "threads_at_end": soak.thread_names, "interrupted": soak.interrupted,
               "minutes_run": round(soak.elapsed() / 60.0, 2)}
    (work / "details.json").write_text(json.dumps(details, indent=2))
    brief = {k: v for k, v in summary.items() if k not in ("rss_mb", "threads", "fds")}
    brief.update(rss_first_last_mb=(summary["rss_mb"][:1] + summary["rss_mb"][-1:]),
                 threads_min_max=[min(soak.threads, default=0), max(soak.threads, default=0)],
                 fds_min_max=[min(soak.fds, default=0), max(soak.fds, default=0)])
    print(json.dumps(brief, indent=2))
    print(json.dumps({k: v for k, v in details.items() if k not in ("fps_out_windows", "host_memory")}, indent=2))
    return 0 if summary["crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
