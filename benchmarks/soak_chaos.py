"""The soak's scheduler: user actions (stage toggles, avatar and source swaps) and faults, one at a time, each fault
kind once early, and how long each fault took to recover.

A fault's recovery is the time from its end until the app works normally again: for a stage's exception burst or
out-of-memory, until the stage starts the call that succeeds (a backoff, a reload or a wedged worker would show);
``fault_first_output_s`` in details.json adds that frame's own compute time.
"""

from __future__ import annotations

import asyncio
import random
import time

from soak_launch import Run
from soak_report import FaultTally

FAULTS = ("stage_burst", "cuda_oom", "model_truncated", "source_lost", "disk_full")
ACTIONS = ("toggle", "avatar", "source")


class Chaos:
    def __init__(self, run: Run) -> None:
        self.run, self.app, self.args, self.results = run, run.app, run.args, run.results

    async def schedule(self) -> None:
        """Every fault kind once (the warm-up, with each avatar prepared first), then random faults and actions."""
        rng = random.Random(self.args.seed)
        order = list(FAULTS)
        rng.shuffle(order)
        stages = self.run.stages
        await self.app.until(lambda: all(self.app.stage(s).get("ready") for s in stages), 300)
        print(f"t={self.results.elapsed():.0f}s models loaded", flush=True)
        await self.warm_up()
        while True:
            name = order.pop(0) if order else rng.choice(FAULTS + ACTIONS)
            t0 = time.monotonic()
            try:
                recovery = await getattr(self, f"do_{name}")(rng)
            except Exception as exc:  # noqa: BLE001 -- a harness failure is the fault's "not recovered"
                print(f"{name} failed in the harness: {exc!r}", flush=True)
                recovery = None
            if name in FAULTS:
                self.results.faults.setdefault(name, FaultTally()).add(recovery)
                done = f"recovered in {recovery:.2f} s" if recovery is not None else "NOT recovered"
                print(f"t={self.results.elapsed():.0f}s fault {name}: {done} (took {time.monotonic() - t0:.0f} s)",
                      flush=True)
            if not order and not self.run.warmed.is_set():
                print(f"t={self.results.elapsed():.0f}s warm-up: every fault once; the viewer cycles start", flush=True)
                self.run.warmed.set()
            await asyncio.sleep(0.5 if order else rng.uniform(2.0, 5.0))

    async def warm_up(self) -> None:
        """Prepare each avatar once and animate it. The first portraits, frames and failed calls after start grow
        ONNX Runtime's arenas to their peak once (kept for reuse); counted from before that, the viewer cycles
        would measure the arenas' first fill, not what peers leave behind."""
        if "liveportrait" not in self.run.stages:
            return
        app = self.app
        for key in ("avatar_b", "avatar_a"):
            seen = len(app.events)
            app.command("avatar", path=str(self.run.assets[key]))
            took = await app.until(lambda: app.event("avatar", "done", seen) or app.event("avatar", "error", seen),
                                   300)
            print(f"t={self.results.elapsed():.0f}s warm-up: {key} "
                  f"{'prepared in %.1f s' % took if took is not None else 'NOT prepared in 300 s'}", flush=True)
        frames = app.stage("liveportrait").get("frames", 0)  # the frame in flight may be the old avatar's
        took = await app.until(lambda: app.stage("liveportrait").get("frames", 0) >= frames + 2, 300)
        done = f"2 frames animated in {took:.0f} s" if took is not None else "NOT 2 frames animated in 300 s"
        print(f"t={self.results.elapsed():.0f}s warm-up: {done}", flush=True)

    # ---------------------------------------------------------------------------------------------- faults
    async def ensure_on(self, stage: str) -> None:
        if not self.app.stage(stage).get("enabled"):
            self.app.command("enable", stage=stage, on=True)
        await self.app.until(lambda: self.app.stage(stage).get("enabled") and self.app.stage(stage).get("ready"), 120)

    async def burst(self, stage: str, op: str, count: int) -> float | None:
        await self.ensure_on(stage)
        tag = f"{op}:{stage}#{self.app.seq + 1}"
        self.app.command(op, stage=stage, count=count, name=tag)
        if await self.app.until(lambda: self.app.event(tag, "recovered"), self.args.fault_timeout) is None:
            return None
        event = self.app.event(tag, "recovered")
        assert event is not None
        first = float(event.get("first_output_s", event["recovery_s"]))
        self.results.first_output_s[op] = max(self.results.first_output_s.get(op, 0.0), first)
        return float(event["recovery_s"])

    async def do_stage_burst(self, rng: random.Random) -> float | None:
        async with self.run.stage_lock:
            return await self.burst(rng.choice(self.run.stages), "stage_burst", rng.randint(1, 4))

    async def do_cuda_oom(self, rng: random.Random) -> float | None:
        async with self.run.stage_lock:
            # torch raises it in LivePortrait on a GPU; with LivePortrait off, the detector stands in
            stages = self.run.stages
            return await self.burst("liveportrait" if "liveportrait" in stages else stages[0], "cuda_oom", 1)

    async def do_model_truncated(self, rng: random.Random) -> float | None:
        """Half the SCRFD file goes missing and the stage reloads it (the load fails, frames pass through); the
        file comes back and the stage reloads again: recovered once it runs again."""
        app = self.app
        async with self.run.stage_lock:
            await self.ensure_on("scrfd")
            path = self.run.assets["scrfd"]
            good = path.read_bytes()
            path.write_bytes(good[: len(good) // 2])
            app.command("reset_stage", stage="scrfd")
            broken = await app.until(lambda: not app.stage("scrfd").get("ready")
                                     and app.stage("scrfd").get("reason") not in ("", "loading...", "off"),
                                     self.args.fault_timeout)
            path.write_bytes(good)
            if broken is None:
                print(f"the truncated model was not reported: {app.stage('scrfd')}", flush=True)
                return None
            print(f"  truncated SCRFD reported: {app.stage('scrfd').get('reason')}", flush=True)
            app.command("reset_stage", stage="scrfd")
            return await app.until(lambda: app.stage("scrfd").get("ready") and not app.stage("scrfd").get("reason"),
                                   self.args.fault_timeout)

    async def do_source_lost(self, rng: random.Random) -> float | None:
        """The camera vanishes (SourceLost: the engine falls back to the demo) and comes back (chosen again)."""
        app, clip = self.app, str(self.run.assets["clip"])
        async with self.run.source_lock:
            if not app.source_is("video:"):
                app.command("source", spec=clip, width=self.args.width, height=self.args.height)
                await app.until(lambda: app.source_is("video:"), 30)
            await asyncio.sleep(1.0)  # the capture thread has taken any pending switch: the fault hits the source read
            app.command("source_lost")
            if await app.until(lambda: app.source_is("demo"), self.args.fault_timeout) is None:
                return None
            await asyncio.sleep(1.0)
            frames_in = int(app.status.get("frames_in", 0))
            app.command("source", spec=clip, width=self.args.width, height=self.args.height)
            return await app.until(lambda: app.source_is("video:") and int(app.status.get("frames_in", 0))
                                   > frames_in + 2, self.args.fault_timeout)

    async def do_disk_full(self, rng: random.Random) -> float | None:
        """The disk fills under the recorder: it stops with the reason while the video goes on; once space is back
        a new recording starts. Recovered = the video never stopped and the new recording writes."""
        app, timeout = self.app, self.args.fault_timeout
        app.command("disk_full", on=True)
        if await app.until(lambda: "disk is full" in str(app.recorder().get("error")), timeout) is None:
            app.command("disk_full", on=False)
            return None
        out = int(app.status.get("frames_out", 0))
        flowing = await app.until(lambda: int(app.status.get("frames_out", 0)) > out, timeout)
        app.command("disk_full", on=False)
        app.recording += 1
        t0 = time.monotonic()
        name = f"rec-{app.recording}.mp4"
        app.command("record", path=str(self.run.work / name))
        writing = await app.until(lambda: app.recorder().get("error") is None
                                  and app.recorder().get("frames_written", 0) > 0
                                  and str(app.recorder().get("path", "")).endswith(name), timeout)
        if flowing is None or writing is None:
            return None
        return time.monotonic() - t0

    # --------------------------------------------------------------------------------------------- actions
    async def do_toggle(self, rng: random.Random) -> None:
        async with self.run.stage_lock:
            stage = rng.choice(self.run.stages)
            self.app.command("enable", stage=stage, on=False)
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            self.app.command("enable", stage=stage, on=True)

    async def do_avatar(self, rng: random.Random) -> None:
        self.app.command("avatar", path=str(self.run.assets[rng.choice(["avatar_a", "avatar_b"])]))

    async def do_source(self, rng: random.Random) -> None:
        async with self.run.source_lock:
            spec = rng.choice(["demo", str(self.run.assets["image"])])
            self.app.command("source", spec=spec, width=self.args.width, height=self.args.height)
            await asyncio.sleep(rng.uniform(3.0, 8.0))
            self.app.command("source", spec=str(self.run.assets["clip"]), width=self.args.width,
                             height=self.args.height)
