"""Round trip of the remote engine on this machine: an engine process and a client process on the loopback.

    python benchmarks/remote_round_trip.py [--seconds 20] [--width 1280 --height 720] [--enable scrfd,...]

Starts ``mirage --headless --source demo --http-port P`` (the stages as --enable says; none by default), then
``mirage --headless --remote http://127.0.0.1:P --source demo --seconds N --stats-json``, and prints the client's
``remote`` block: round trip (local capture -> avatar frame back, decoded) P50/P95, frames, and the client's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--enable", default="", help="stages to switch on at the remote engine")
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="mirage-bench-"))
    env = dict(os.environ, PYTHONPATH=str(REPO), MIRAGE_SETTINGS=str(home / "settings.json"),
               MIRAGE_LOG_DIR=str(home / "logs"))
    size = ["--width", str(args.width), "--height", str(args.height)]
    mirage = [sys.executable, "-m", "mirage_desktop.app", "--headless", "--source", "demo", *size, "--quiet"]
    enable = ["--enable", args.enable] if args.enable else []
    remote = subprocess.Popen([*mirage, "--http-port", str(port), "--token", "bench", *enable],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert remote.stdout is not None
    for line in remote.stdout:
        if "HTTP/WebRTC server on" in line:
            break
    stats_path = home / "client.json"
    try:
        subprocess.run([*mirage, "--remote", f"http://127.0.0.1:{port}", "--token", "bench", "--seconds",
                        str(args.seconds), "--stats-json", str(stats_path)], env=env, check=True)
    finally:
        remote.terminate()
        remote.wait(30)
    stats = json.loads(stats_path.read_text())
    block = stats["remote"]
    print(f"{args.width}x{args.height}, remote stages: {args.enable or 'none'}, {args.seconds:.0f} s")
    print(f"round trip p50 {block['round_trip_p50_ms']} ms  p95 {block['round_trip_p95_ms']} ms  "
          f"({block['round_trip_samples']} frames matched, {block['frames_received']} received)")
    print(f"client output {stats['fps_out']} fps, remote output {block.get('remote_fps_out')} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
