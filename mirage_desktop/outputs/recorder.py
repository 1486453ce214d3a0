"""Records the engine's output to an H.264 MP4 file (plays in every player), on its own thread."""

from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.outputs import Output

logger = logging.getLogger(__name__)


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


class Recorder(Output):
    """Encodes frames with libx264 (yuv420p) at a constant rate; the first frame fixes the video size.

    ``send`` only enqueues. With ``lossless_order=True`` (offline rendering) it blocks when the encoder falls behind
    so that no frame is lost; otherwise it drops the frame and counts it, so live latency never grows.
    """

    name = "recorder"

    def __init__(self, path: Path | str, fps: float = 30.0, *, keep_every_frame: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.fps = fps
        self.keep_every_frame = keep_every_frame
        self.frames_written = 0
        self.frames_dropped = 0
        self.error: str | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=8)
        check_writable(self.path)
        self._thread = threading.Thread(target=self._run, name="mirage-recorder", daemon=True)
        self._thread.start()

    def send(self, frame: Frame) -> None:
        if self.error is not None:
            return
        if self.keep_every_frame:
            self._queue.put(frame.image)
            return
        try:
            self._queue.put_nowait(frame.image)
        except queue.Full:
            self.frames_dropped += 1

    def _run(self) -> None:
        import av

        container: Any = None
        stream: Any = None
        size: tuple[int, int] | None = None
        try:
            while True:
                image = self._queue.get()
                if image is None:
                    break
                if container is None:
                    h, w = image.shape[:2]
                    size = (w - w % 2, h - h % 2)  # yuv420p needs even sides
                    container = av.open(str(self.path), mode="w")
                    rate = Fraction(self.fps).limit_denominator(1001)
                    stream = container.add_stream("libx264", rate=rate)
                    stream.width, stream.height = size
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"preset": "veryfast", "crf": "20"}
                assert size is not None
                if (image.shape[1], image.shape[0]) != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                self.frames_written += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        except Exception as exc:  # disk full, codec failure: stop recording, keep the video going
            self.error = f"Recording to {self.path} failed: {exc}"
            logger.error("%s", self.error)
        finally:
            if container is not None:
                container.close()

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
                "error": self.error}
