"""SIGTERM and SIGHUP end ``mirage --headless`` the way Ctrl+C does: the real process, a real signal, and the
recording and stats checked afterwards with independent readers (PyAV's demuxer and decoder, the JSON parser)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
from recording_helpers import decoded_frames

REPO = Path(__file__).resolve().parents[1]
FPS = 30


def start_headless(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "mirage_desktop.app", "--headless", "--source", "demo",
                             "--width", "320", "--height", "240", "--fps", str(FPS), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def wait_for_status_lines(proc: subprocess.Popen[str], n: int) -> list[str]:
    """Read the per-second status lines until ``n`` came (the engine runs and frames reach the outputs)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while len(lines) < n:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("fps"):
            lines.append(line)
    return lines


def frames_out(status_line: str) -> int:
    return int(status_line.split("| out ")[1].split()[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_finalises_recording_and_stats(tmp_path: Path, sig: signal.Signals) -> None:
    video, stats_path = tmp_path / "out.mp4", tmp_path / "s.json"
    proc = start_headless(tmp_path, "--record", str(video), "--stats-json", str(stats_path))
    try:
        assert len(wait_for_status_lines(proc, 3)) == 3, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"{sig.name} received" in err
    stats = json.loads(stats_path.read_text())
    written = stats["outputs"]["recorder"]["frames_written"]
    assert stats["outputs"]["recorder"]["error"] is None
    assert written >= stats["frames_out"] - 8  # the recorder's queue may drop a few under load, no more
    with av.open(str(video)) as container:  # finished normally: a plain MP4, index first, one stream
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert container.format.name.startswith("mov,mp4")
    assert decoded_frames(video) == written  # every frame the app wrote plays, to the last one
    assert written >= 2 * FPS * 0.5  # at least two seconds' worth even on a loaded machine
    head = video.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moof") == -1  # faststart finish: index first, no fragments


def test_kill_9_loses_at_most_about_a_second(tmp_path: Path) -> None:
    """A fragment per second, synced: after SIGKILL everything but the last second or so decodes."""
    video = tmp_path / "out.mp4"
    proc = start_headless(tmp_path, "--record", str(video))
    try:
        lines = wait_for_status_lines(proc, 8)
        assert len(lines) == 8
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    sent = frames_out(lines[-1])  # frames the engine had handed to the recorder at the last status line
    n = decoded_frames(video)
    # lost: the fragment being written (<= 1 s of frames), the encoder's lookahead and the recorder's queue
    assert n >= sent - int(1.5 * FPS) - 8, (n, sent)
    assert n >= 5 * FPS * 0.5  # and not just a sliver, even at half the frame rate
