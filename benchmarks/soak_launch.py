"""The soak's set-up and the app under test: the assets it runs on, the ``mirage --headless`` process, and the
control folder the harness talks to it through (soak_app.py is the other end)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from soak_report import Results

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TOKEN = "soak-token-0123456789abcdef"


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
    sys.path.insert(0, str(REPO))
    if liveportrait:  # the avatar crops with the two landmark networks: the geometry kit's stand-ins
        marks = cache / "landmarks"
        if not ((marks / "2d106det.onnx").exists() and (marks / "landmark.onnx").exists()):
            subprocess.run([sys.executable, str(SHARED / "liveportrait" / "geometry" / "synth_landmark_models.py"),
                            str(marks)], check=True)
        from mirage_desktop.models.registry import landmark_paths

        for name, target in landmark_paths(models).items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(marks / name)
    scrfd = models / "scrfd" / "scrfd_2.5g_bnkps.onnx"
    scrfd.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED / "models" / "scrfd_2.5g.onnx", scrfd)

    import av

    from mirage_desktop.engine.sources import DemoSource

    clip = work / "clip.mp4"
    demo = DemoSource(width, height, fps, paced=False)
    demo.open()
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(int(6 * fps)):
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


class App:
    """The app's process and the control folder: commands out, events and status in."""

    def __init__(self, args: argparse.Namespace, work: Path, assets: dict[str, Path]) -> None:
        self.args, self.work, self.assets = args, work, assets
        self.ctl = work / "ctl"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.recording = 0  # the number of the recording being written (rec-N.mp4)
        self.seq = 0
        self.events_pos = 0
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {}

    def launch(self) -> None:
        a = self.args
        self.port = free_port()
        env = dict(os.environ)
        env.update({"PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                    "MIRAGE_LOG_DIR": str(self.work / "logs"), "QT_QPA_PLATFORM": "offscreen",
                    # an "auto" backend exports and measures once per machine: keep that in the soak's cache
                    "MIRAGE_CACHE_DIR": str(a.cache / "backends")})
        for var in ("MIRAGE_ENABLE_SCRFD", "MIRAGE_ENABLE_LIVEPORTRAIT", "MIRAGE_SOURCE", "MIRAGE_AVATAR"):
            env.pop(var, None)
        self.recording += 1
        cmd = [sys.executable, str(Path(__file__).resolve().with_name("soak.py")), "--child", str(self.ctl),
               "--headless", "--source", str(self.assets["clip"]), "--enable", a.enable,
               "--models-dir", str(self.assets["models"]), "--width", str(a.width), "--height", str(a.height),
               "--fps", str(a.fps), "--record", str(self.work / f"rec-{self.recording}.mp4"), "--virtual-camera",
               "--http-port", str(self.port), "--token", TOKEN, "--stats-json", str(self.work / "final.json"),
               "--settings", str(self.work / "settings.json"), "--quiet", "--device", "cpu",
               "--backend", a.backend]
        with open(self.work / "app.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        print(f"app pid {self.proc.pid} on port {self.port}; log {self.work / 'app.log'}", flush=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def dump_stacks(self) -> None:
        """Every thread's stack into app.log (the app's SIGUSR1 handler), where the OS has the signal."""
        if self.alive() and self.proc is not None and hasattr(signal, "SIGUSR1"):
            self.proc.send_signal(signal.SIGUSR1)

    # -------------------------------------------------------------------------------------- control folder
    def command(self, op: str, **fields: Any) -> None:
        self.seq += 1
        tmp = self.ctl / f"tmp-{self.seq:06d}"
        tmp.write_text(json.dumps({"op": op, **fields}))
        os.replace(tmp, self.ctl / f"cmd-{self.seq:06d}.json")

    def read_events(self) -> None:
        try:
            with open(self.ctl / "events.jsonl", encoding="utf-8") as f:
                f.seek(self.events_pos)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self.events_pos += len(complete.encode("utf-8"))
        self.events.extend(json.loads(line) for line in complete.splitlines() if line.strip())

    def read_status(self) -> dict[str, Any]:
        try:
            self.status = json.loads((self.ctl / "status.json").read_text())
        except (OSError, ValueError):
            pass
        return self.status

    def event(self, name: str, kind: str | None = None, since: int = 0) -> dict[str, Any] | None:
        """The first event called ``name`` (of ``kind``, when given) from index ``since`` on, or None."""
        return next((e for e in self.events[since:] if e["name"] == name and (kind is None or e["event"] == kind)),
                    None)

    async def until(self, cond: Callable[[], Any], timeout: float, step: float = 0.1) -> float | None:
        """Seconds until ``cond()`` holds (status and events read fresh each time), or None after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.read_status()
            self.read_events()
            if cond():
                return time.monotonic() - t0
            await asyncio.sleep(step)
        return None

    def stage(self, name: str) -> dict[str, Any]:
        return dict(self.status.get("stages", {}).get(name, {}))

    def source_is(self, prefix: str) -> bool:
        return str(self.status.get("source", "")).startswith(prefix)

    def recorder(self) -> dict[str, Any]:
        return dict(self.status.get("outputs", {}).get("recorder", {}))

    # ------------------------------------------------------------------------------------------------ stop
    async def stop(self) -> bool:
        """SIGTERM, as a service manager stops it; True when it exited cleanly (code 0)."""
        if not self.alive() or self.proc is None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(1200):
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            print("the app did not stop within 120 s of SIGTERM; killing it", flush=True)
            self.dump_stacks()
            await asyncio.sleep(1.0)
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode != 0:
            print(f"CRASH: exit code {self.proc.returncode} after SIGTERM", flush=True)
            return False
        return True

    def uncaught_in_log(self) -> list[str]:
        try:
            text = (self.work / "app.log").read_text(errors="replace")
        except OSError:  # stopped before the app was launched
            return []
        needles = ("Exception in thread", "Fatal Python error", "Segmentation fault")
        return [line for line in text.splitlines() if any(n in line for n in needles)]


@dataclass
class Run:
    """What the harness's tasks share: the options, the assets, the app, the figures, and who may touch what."""

    args: argparse.Namespace
    work: Path
    assets: dict[str, Path]
    app: App
    results: Results = field(default_factory=Results)
    source_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one source change at a time (driver too)
    stage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one stage fault or toggle at a time
    warmed: asyncio.Event = field(default_factory=asyncio.Event)  # the warm-up is over: the viewer cycles may start

    @property
    def stages(self) -> list[str]:
        return [s for s in ("scrfd", "liveportrait") if s in self.args.enable.split(",")]
