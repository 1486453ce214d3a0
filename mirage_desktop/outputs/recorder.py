"""Records the engine's output to an H.264 MP4 file that survives a crash, on its own thread.

The file is written as fragmented MP4 (an empty ``moov`` up front, then one ``moof``+``mdat`` fragment per
keyframe, a keyframe every second) and synced to disk once a second, so a ``kill -9`` or a power cut loses at most
about the last second: everything before it plays. A normal stop then rewrites the file as a plain MP4 with its
index first ("faststart", packets copied, not re-encoded), the layout every player and browser opens and seeks
fastest; if that rewrite cannot be done (no space for the copy) the fragmented file stays, which plays too.

A write error (full disk, file system gone read-only) stops the recorder with a clear reason in ``error`` (and
``on_error``), never the video.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable

import cv2
import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import Output

logger = logging.getLogger(__name__)

#: Muxer flags of the crash-safe layout: a fragment at every keyframe, no index needed at the end.
FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
#: Seconds between keyframes, hence fragments: the most a crash can lose.
FRAGMENT_S = 1.0
#: Seconds between fsyncs: what a power cut can lose beyond the last fragment.
SYNC_S = 1.0


class RecorderError(RuntimeError):
    """The output file cannot be written; the message names the path and the fix."""


def check_writable(path: Path) -> None:
    """Fail early, before the engine starts, when ``path`` cannot be created."""
    parent = path.expanduser().resolve().parent
    if not parent.is_dir():
        raise RecorderError(f"Cannot write {path}: folder {parent} does not exist. Create it or choose another path.")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise RecorderError(f"Cannot write {path}: {exc.strerror}. Choose a writable path.") from exc


def write_failure_reason(path: Path, exc: OSError, written: int) -> str:
    """One line for the user: what happened, how much is kept, and the fix."""
    kept = f"{written / 2**20:.1f} MB written; the recording plays up to its last full second"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"Recording to {path} stopped: the disk is full ({kept}). Free some space or record to another disk."
    if exc.errno == errno.EROFS:
        return f"Recording to {path} stopped: the file system became read-only ({kept}). Record to another disk."
    return f"Recording to {path} stopped: {exc.strerror or exc} ({kept}). Check the disk or choose another path."


class _SyncedFile:
    """The recording's file: counts bytes, syncs to disk once a second and remembers the first write error, so
    the reason given is the operating system's ("No space left on device"), not the muxer's generic one."""

    def __init__(self, path: Path, raw: BinaryIO) -> None:
        self.path = path
        self._f = raw
        self.written = 0
        self.error: OSError | None = None
        self._synced = time.monotonic()

    def write(self, data: bytes | memoryview) -> int:
        try:
            view = memoryview(data)
            n = 0
            while n < len(view):  # a raw write may be partial
                done = self._f.write(view[n:])
                if not done:
                    raise OSError(errno.EIO, "the file accepted no bytes")
                n += done
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise
        self.written += n
        now = time.monotonic()
        if now - self._synced >= SYNC_S:
            self._synced = now
            self.sync()
        return n

    def sync(self) -> None:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            if self.error is None:
                self.error = exc

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        try:
            self.sync()
            self._f.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc


def faststart(path: Path) -> bool:
    """Rewrite a finished fragmented MP4 as a plain MP4 with its index first (packets copied). The original is
    replaced only once the copy is complete; False (original kept) when the copy fails."""
    import av

    tmp = path.with_name(f".{path.name}.faststart.mp4")
    try:
        with av.open(str(path)) as src, av.open(str(tmp), mode="w", format="mp4",
                                                 options={"movflags": "faststart"}) as dst:
            in_stream = src.streams.video[0]
            out_stream = dst.add_stream_from_template(in_stream)
            for packet in src.demux(in_stream):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = out_stream
                dst.mux(packet)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except Exception as exc:  # no space for the copy, an odd file: the fragmented one plays anyway
        logger.warning("Could not rewrite %s with its index first (%s); keeping the fragmented file", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


class Recorder(Output):
    """Encodes frames with libx264 (yuv420p); the first frame fixes the video size. Live frames are timed by
    their capture times on a ``fps`` grid (a frame the engine did not deliver is a longer display of the previous
    one), offline frames (``keep_every_frame``) by their order.

    ``send`` only enqueues. With ``keep_every_frame=True`` (offline rendering) it blocks when the encoder falls
    behind so that no frame is lost; otherwise it drops the frame and counts it, so live latency never grows.
    ``on_error`` is called once (from the recorder thread) with the reason when recording stops on an error.
    """

    name = "recorder"

    def __init__(self, path: Path | str, fps: float = 30.0, *, keep_every_frame: bool = False,
                 finish_faststart: bool = True, on_error: Callable[[str], None] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.fps = fps
        self.keep_every_frame = keep_every_frame
        self.finish_faststart = finish_faststart
        self.on_error = on_error
        self.frames_written = 0
        self.frames_dropped = 0
        self.bytes_written = 0
        self.error: str | None = None
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=8)
        check_writable(self.path)
        self._thread = threading.Thread(target=self._run, name="mirage-recorder", daemon=True)
        self._thread.start()

    def send(self, frame: Frame) -> None:
        if self.error is not None:
            return
        if self.keep_every_frame:
            self._queue.put(frame)
            return
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            self.frames_dropped += 1

    def open_file(self, path: Path) -> BinaryIO:
        """The file the recording's bytes go to, unbuffered so that what the muxer wrote survives a kill. The one
        place the recorder reaches the disk: a test (or the soak) overrides it to put a file in between that fails
        as a full disk does."""
        return open(path, "wb", buffering=0)

    def _open(self, image: np.ndarray) -> tuple[Any, Any, _SyncedFile, tuple[int, int]]:
        import av

        h, w = image.shape[:2]
        size = (w - w % 2, h - h % 2)  # yuv420p needs even sides
        file = _SyncedFile(self.path, self.open_file(self.path))
        container = av.open(file, mode="w", format="mp4", options={"movflags": FRAGMENTED_MOVFLAGS,
                                                                   "flush_packets": "1"})  # no avio buffering
        rate = Fraction(self.fps).limit_denominator(1001)
        gop = max(1, round(float(rate) * FRAGMENT_S))
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        # zerolatency: no lookahead and no B-frames, so each frame leaves the encoder at once (a slow engine's
        # frames would otherwise wait in it for minutes); forced-idr: a keyframe forced by time starts a fragment
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "20", "g": str(gop),
                          "keyint_min": str(gop), "sc_threshold": "0", "forced-idr": "1"}
        return container, stream, file, size

    def _run(self) -> None:
        import av
        from av.video.frame import PictureType

        container: Any = None
        stream: Any = None
        file: _SyncedFile | None = None
        size: tuple[int, int] | None = None
        failed = False
        t_first = t_key = 0.0
        pts = -1
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                image = item.image
                if container is None:
                    container, stream, file, size = self._open(image)
                    t_first = item.t_capture
                    time_base = Fraction(1) / Fraction(self.fps).limit_denominator(1001)
                # Live: stamp each frame with its capture time, so the file lasts as long as the run even when a
                # slow stage delivers few frames (the player holds each one until the next). Offline: one slot each.
                slot = pts + 1 if self.keep_every_frame else round((item.t_capture - t_first) * self.fps)
                pts = max(pts + 1, slot)
                assert size is not None
                if (image.shape[1], image.shape[0]) != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                frame.pts = pts
                frame.time_base = time_base
                t = float(pts * time_base)
                if t - t_key >= FRAGMENT_S:  # a fragment per second of video even when frames come slowly
                    frame.pict_type = PictureType.I
                    t_key = t
                for packet in stream.encode(frame):
                    container.mux(packet)
                self.frames_written += 1
                self.bytes_written = file.written if file is not None else 0
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        except Exception as exc:  # disk full, codec failure: stop recording, keep the video going
            failed = True
            cause = file.error if file is not None and file.error is not None else None
            if cause is not None:
                self._fail(write_failure_reason(self.path, cause, file.written if file else 0))
            else:
                self._fail(f"Recording to {self.path} stopped: {type(exc).__name__}: {exc}")
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:  # the trailer could not be written: the fragments before it still play
                    if not failed:
                        failed = True
                        cause = file.error if file is not None else None
                        self._fail(write_failure_reason(self.path, cause, file.written) if cause and file
                                   else f"Recording to {self.path} could not be finished: {exc}")
            if file is not None:
                file.close()
                self.bytes_written = file.written
            self._drain()
        if container is not None and not failed and self.finish_faststart:
            faststart(self.path)

    def _fail(self, reason: str) -> None:
        self.error = reason
        logger.error("%s", reason)
        if self.on_error is not None:
            try:
                self.on_error(reason)
            except Exception:
                logger.exception("Recorder error listener failed")

    def _drain(self) -> None:
        """Empty the queue after a failure, so a blocking ``send`` (offline rendering) does not wait forever."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def close(self) -> None:
        if self._thread.is_alive():
            deadline = time.monotonic() + 30.0
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "frames_written": self.frames_written, "frames_dropped": self.frames_dropped,
                "bytes_written": self.bytes_written, "error": self.error}
