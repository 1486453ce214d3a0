"""Pass-through cost of the engine: end-to-end latency it adds, CPU it uses, frames it drops.

A 30 fps source replays pre-rendered demo frames (so the figures exclude rendering, like a camera handing over
buffers), the engine runs with no stage enabled and one output, for each resolution.

    python benchmarks/pipeline.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mirage_desktop.engine.outputs import CallbackOutput
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource, Pacer, Source


class ReplaySource(Source):
    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.frames, self.fps, self.name = frames, fps, "replay"
        self._i = 0
        self._pacer = Pacer(fps)

    def open(self) -> None:
        self._pacer = Pacer(self.fps)

    def read(self) -> np.ndarray:
        self._pacer.wait()
        frame = self.frames[self._i % len(self.frames)]
        self._i += 1
        return frame


def run(width: int, height: int, seconds: float, fps: float) -> dict[str, float]:
    demo = DemoSource(width, height, fps, paced=False)
    demo.open()
    frames = [demo.read() for _ in range(30)]
    for f in frames:
        f.flags.writeable = False
    engine = Engine(ReplaySource(frames, fps))
    received = [0]
    engine.add_output(CallbackOutput(lambda frame: received.__setitem__(0, received[0] + 1)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    engine.start()
    time.sleep(seconds)
    engine.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    s = engine.stats()
    e2e = s.end_to_end
    return {
        "p50": e2e.p50_ms, "p95": e2e.p95_ms, "p99": e2e.p99_ms,
        "fps": s.frames_out / wall, "cpu": 100.0 * cpu / wall, "dropped": s.dropped,
        "frames": s.frames_out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    print(f"pass-through, {args.fps:g} fps source, {args.seconds:g} s each")
    print(f"{'size':>10} | {'P50 ms':>7} {'P95 ms':>7} {'P99 ms':>7} | {'fps out':>7} | {'CPU %':>6} | dropped")
    for w, h in ((1280, 720), (1920, 1080)):
        r = run(w, h, args.seconds, args.fps)
        print(f"{w}x{h:<5} | {r['p50']:7.3f} {r['p95']:7.3f} {r['p99']:7.3f} | {r['fps']:7.2f} | "
              f"{r['cpu']:6.1f} | {r['dropped']} of {r['frames']}")


if __name__ == "__main__":
    main()
