"""The recorder under write failures: a full disk (a real small tmpfs when we may mount one, else ENOSPC from a
file put in between at the recorder's file boundary, ``Recorder.open_file``) and an unwritable path. The files are read back with PyAV, not with our code."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import pytest

from mirage_desktop.engine.frame import Frame
from mirage_desktop.outputs.recorder import Recorder, RecorderError
from recording_helpers import decoded_frames

FPS = 30


def frame(i: int, size: tuple[int, int] = (320, 240)) -> Frame:
    """A moving gradient: compresses like video, not like noise."""
    w, h = size
    x = np.arange(w, dtype=np.uint16)[None, :, None]
    y = np.arange(h, dtype=np.uint16)[:, None, None]
    image = ((x + y + 4 * i) % 256).astype(np.uint8).repeat(3, axis=2)
    return Frame(image=image, index=i, t_capture=time.perf_counter(), camera=image)


def wait_written(rec: Recorder, n: int) -> None:
    deadline = time.monotonic() + 30
    while rec.frames_written < n and rec.error is None and time.monotonic() < deadline:
        time.sleep(0.01)


class FillingDisk:
    """A file whose writes fail as a full disk's do (ENOSPC, nothing written) once ``full`` is set."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.full = False

    def write(self, data: bytes) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class RecorderOnFillingDisk(Recorder):
    def open_file(self, path: Path) -> BinaryIO:
        self.disk = FillingDisk(super().open_file(path))
        return self.disk  # type: ignore[return-value]


def test_injected_disk_full_stops_the_recorder_not_the_caller(tmp_path: Path) -> None:
    reasons: list[str] = []
    rec = RecorderOnFillingDisk(tmp_path / "out.mp4", fps=FPS, keep_every_frame=True, on_error=reasons.append)
    for i in range(3 * FPS):
        rec.send(frame(i))
    wait_written(rec, 3 * FPS)
    before = rec.frames_written
    rec.disk.full = True
    t0 = time.monotonic()
    for i in range(3 * FPS, 6 * FPS):  # keeps returning: the video never waits for a broken disk
        rec.send(frame(i))
    rec.close()
    assert time.monotonic() - t0 < 30
    assert rec.error is not None and "disk is full" in rec.error and "Free some space" in rec.error
    assert reasons == [rec.error]
    assert decoded_frames(tmp_path / "out.mp4") >= before - FPS - 8  # all but the fragment in progress plays


def test_real_full_disk_on_a_small_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the injected test covers it")
    try:
        rec = Recorder(mount / "out.mp4", fps=FPS, keep_every_frame=True)
        for i in range(30 * FPS):
            if rec.error is not None:
                break
            rec.send(frame(i, (640, 360)))
        rec.close()
        assert rec.error is not None and "disk is full" in rec.error, rec.stats()
        assert 0 < decoded_frames(mount / "out.mp4") < rec.frames_written
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_unwritable_path_is_refused_before_recording(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match="Choose a writable path"):
        Recorder(tmp_path, fps=FPS)  # a folder, not a file
    with pytest.raises(RecorderError, match="does not exist"):
        Recorder(tmp_path / "missing" / "out.mp4", fps=FPS)


def test_fragment_every_second_while_recording(tmp_path: Path) -> None:
    """While running the file is fragmented (an empty index first, then fragments): what makes a kill safe.
    Read with the box layout of ISO/IEC 14496-12 and PyAV's keyframe flags, not with the recorder's code."""
    path = tmp_path / "out.mp4"
    rec = Recorder(path, fps=FPS, keep_every_frame=True, finish_faststart=False)
    for i in range(4 * FPS):
        rec.send(frame(i))
    rec.close()
    data, boxes, i = path.read_bytes(), [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        boxes.append(data[i + 4:i + 8])
        i += max(size, 8)
    assert boxes[:2] == [b"ftyp", b"moov"] and boxes.count(b"moof") >= 4
    with av.open(str(path)) as container:
        keys = [f.key_frame for f in container.decode(video=0)]
    assert len(keys) == 4 * FPS and sum(keys) == 4  # a keyframe (and fragment) each second


def send_slowly(rec: Recorder, n: int) -> None:
    """``n`` frames captured half a second apart (a slow stage), handed over quickly."""
    t0 = time.perf_counter()
    for i in range(n):
        f = frame(i)
        f.t_capture = t0 + 0.5 * i
        rec.send(f)
        time.sleep(0.02)


def test_a_slow_engine_still_gives_a_recording_as_long_as_the_run(tmp_path: Path) -> None:
    """Frames half a second apart (a slow stage) keep their capture times: each plays until the next one, and the
    file lasts as long as the run, not 10 frames / 30 fps. PyAV's frame times are the oracle."""
    path = tmp_path / "out.mp4"
    rec = Recorder(path, fps=FPS)
    send_slowly(rec, 10)
    rec.close()
    with av.open(str(path)) as container:
        times = [f.time for f in container.decode(video=0)]
    assert len(times) == 10
    assert times == pytest.approx([0.5 * i for i in range(10)], abs=1.0 / FPS)


def test_slow_frames_are_on_disk_within_a_second_of_video(tmp_path: Path) -> None:
    """A slow engine (a frame every half second): keyframes, hence fragments, come by time and the encoder holds
    nothing back, so a copy of the file taken while recording (what a kill leaves) already plays almost all."""
    path = tmp_path / "out.mp4"
    rec = Recorder(path, fps=FPS)
    send_slowly(rec, 8)
    wait_written(rec, 8)
    time.sleep(1.5)  # the once-a-second flush
    snapshot = tmp_path / "killed.mp4"
    snapshot.write_bytes(path.read_bytes())
    rec.close()
    assert decoded_frames(snapshot) >= 6  # at most the last second (2 frames here) missing
    with av.open(str(path)) as container:
        keys = [f.key_frame for f in container.decode(video=0)]
    assert len(keys) == 8 and sum(keys) >= 4
