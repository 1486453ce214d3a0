"""The ``mirage --headless`` command as scripts and users run it: in a subprocess, through the entry module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def mirage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "mirage_desktop.app", "--headless", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_demo_run_writes_stats_and_a_playable_recording(tmp_path: Path) -> None:
    stats_path, video = tmp_path / "s.json", tmp_path / "out.mp4"
    r = mirage("--source", "demo", "--seconds", "3", "--width", "640", "--height", "360",
               "--stats-json", str(stats_path), "--record", str(video))
    assert r.returncode == 0, r.stderr
    assert "fps" in r.stdout and "e2e p50" in r.stdout  # the per-second status line
    stats = json.loads(stats_path.read_text())
    assert list(stats) == ["source", "device", "frames_in", "frames_out", "dropped", "fps_in", "fps_out", "uptime_s",
                           "stages", "end_to_end", "gpu_memory", "host_memory", "outputs", "backends", "wall_s"]
    assert set(stats["end_to_end"]) >= {"p50_ms", "p95_ms", "p99_ms"}
    # the process's own figures: the engine's three threads at least, and the recording's file among the handles
    host = stats["host_memory"]
    assert set(host) == {"rss_mb", "rss_file_mb", "threads", "handles"}
    assert host["rss_mb"] > 0 and host["threads"] >= 3 and host["handles"] >= 1
    assert stats["frames_out"] > 30
    assert 15 < stats["fps_out"] < 40
    cap = cv2.VideoCapture(str(video))
    n, first = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        n += 1
    assert n >= stats["frames_out"] - 5
    assert first is not None and first.shape == (360, 640, 3)


def test_every_frame_from_a_video_file_keeps_every_frame(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for i in range(20):
        writer.write(np.full((64, 96, 3), i * 10, np.uint8))
    writer.release()
    stats_path = tmp_path / "s.json"
    r = mirage("--source", str(clip), "--every-frame", "--stats-json", str(stats_path), "--quiet")
    assert r.returncode == 0, r.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["frames_out"] == 20 and stats["dropped"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--source", "57"], "Camera 57 cannot be opened"),
        (["--source", "nope.mp4"], "neither 'demo', a camera index, nor an existing file"),
        (["--enable", "scrfd,warpdrive"], "Unknown stage 'warpdrive'"),
        (["--stats-json", "/nonexistent-dir/s.json"], "does not exist"),
        (["--source", "demo", "--every-frame"], "--every-frame works with a video or image file"),
    ],
)
def test_user_mistakes_give_one_clear_line_and_exit_2(args: list[str], needle: str) -> None:
    r = mirage(*args, "--seconds", "1")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_files_that_are_not_media_are_refused(tmp_path: Path) -> None:
    bad_image = tmp_path / "photo.png"
    bad_image.write_bytes(b"this is not a png")
    r = mirage("--source", str(bad_image), "--seconds", "1")
    assert r.returncode == 2 and "not an image" in r.stderr and "Traceback" not in r.stderr
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(os.urandom(4096))
    r = mirage("--source", str(bad_video), "--seconds", "1")
    assert r.returncode == 2 and "Cannot decode" in r.stderr and "Traceback" not in r.stderr


def test_still_image_source_runs(tmp_path: Path, shared_dir: Path) -> None:
    stats_path = tmp_path / "s.json"
    r = mirage("--source", str(shared_dir / "media" / "astronaut.png"), "--frames", "10",
               "--stats-json", str(stats_path), "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(stats_path.read_text())["frames_out"] == 10


def test_window_without_a_display_says_how_to_run_instead() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, "-m", "mirage_desktop.app"], capture_output=True, text=True, timeout=60,
                       env=env, cwd=REPO)
    assert r.returncode == 2 and "--headless" in r.stderr and "Traceback" not in r.stderr
