"""``mirage --headless --remote``: a real remote engine process and a real client process on the loopback.

Waits are bounded; the one figure printed (reconnect delay) is reported, not asserted on.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOKEN = "headless-remote-token-8"
SIZE = ("--width", "320", "--height", "240")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["MIRAGE_SETTINGS"] = str(home / "settings.json")
    env["MIRAGE_LOG_DIR"] = str(home / "logs")
    return env


def start_remote(port: int, home: Path) -> tuple[subprocess.Popen[str], float]:
    """The engine process; returns it and the wall-clock time it said it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "mirage_desktop.app", "--headless", "--source", "demo", *SIZE,
                             "--http-port", str(port), "--token", TOKEN, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(home), cwd=REPO)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "HTTP/WebRTC server on" in line:
            return proc, time.time()
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"the remote engine did not start: {proc.communicate()[0]}")


def client(port: int, home: Path, *args: str, token: str = TOKEN, timeout: float = 120) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mirage_desktop.app", "--headless", "--remote",
                             f"http://127.0.0.1:{port}", "--token", token, "--source", "demo", *SIZE, "--quiet",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(home),
                            cwd=REPO)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_avatar_comes_back_with_round_trip_figures_and_a_wrong_token_exits_2(tmp_path: Path) -> None:
    port = free_port()
    remote, _ = start_remote(port, tmp_path / "remote")
    try:
        stats_path, video = tmp_path / "s.json", tmp_path / "out.mp4"
        proc = client(port, tmp_path / "client", "--seconds", "5", "--stats-json", str(stats_path),
                      "--record", str(video))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        stats = json.loads(stats_path.read_text())
        block = stats["remote"]
        assert block["url"] == f"http://127.0.0.1:{port}" and block["connected"] is True
        assert block["frames_received"] > 30 and block["reconnects"] == 0
        assert block["round_trip_samples"] > 30
        assert 0 < block["round_trip_p50_ms"] <= block["round_trip_p95_ms"]
        assert set(block["remote_stages"]) == {"scrfd", "liveportrait"}  # the remote's own figures came along
        assert stats["stages"]["remote"]["reason"] == ""  # not on pass-through at the end
        assert video.stat().st_size > 0  # the local outputs got the frames

        wrong = client(port, tmp_path / "client", "--seconds", "2", token="not-it")
        _, err = wrong.communicate(timeout=60)
        assert wrong.returncode == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "refused the token" in lines[0], err
    finally:
        stop(remote)


def test_clear_text_token_to_another_host_is_refused_before_connecting(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mirage_desktop.app", "--headless", "--remote",
                        "http://203.0.113.7:8765", "--token", TOKEN, "--source", "demo", "--seconds", "1"],
                       capture_output=True, text=True, env=env_for(tmp_path), cwd=REPO, timeout=60)
    assert r.returncode == 2 and "Refusing to send the token in clear text" in r.stderr
    assert "Traceback" not in r.stderr


def wait_line(lines: "queue.Queue[str]", pattern: str, seen: list[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no status line matching {pattern!r}; last lines: {seen[-5:]}")


def frames_out(line: str) -> int:
    return int(re.search(r"\bout (\d+)", line).group(1))  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_restarted_remote_keeps_the_local_video_running_and_is_found_again(tmp_path: Path) -> None:
    port = free_port()
    remote, _ = start_remote(port, tmp_path / "remote")
    stats_path = tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "mirage_desktop.app", "--headless", "--remote",
                             f"http://127.0.0.1:{port}", "--token", TOKEN, "--source", "demo", *SIZE,
                             "--seconds", "300", "--stats-json", str(stats_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env_for(tmp_path / "client"), cwd=REPO)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []
    connected = r"\| remote \d"  # the per-second status line: the remote stage runs, no pass-through reason
    try:
        wait_line(lines, connected, seen)
        remote.kill()  # vanishes without hanging up
        remote.wait()
        first = frames_out(wait_line(lines, "remote: pass-through", seen))
        later = frames_out(wait_line(lines, "remote: pass-through", seen))
        remote, ready_at = start_remote(port, tmp_path / "remote")
        wait_line(lines, connected, seen)
        proc.send_signal(signal.SIGINT)  # ends the run; the stats are written
        proc.wait(60)
    finally:
        stop(proc)
        stop(remote)
    assert proc.returncode == 0
    assert later > first  # the local output kept going on pass-through while the remote was away
    block = json.loads(stats_path.read_text())["remote"]
    assert block["reconnects"] >= 1 and block["connected"] is True, block
    assert block["connected_at"][-1] > ready_at  # the new engine, not the old one
    print(f"reconnected {block['connected_at'][-1] - ready_at:.2f} s after the remote listened again")
