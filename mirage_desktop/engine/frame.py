"""What travels through the engine: one camera frame and what the stages learned about it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirage_desktop.vision.face import Face


@dataclass(slots=True)
class Frame:
    """One frame on its way from the source to the outputs.

    ``image`` is HxWx3 uint8 BGR. Once the engine publishes a frame to the outputs it never writes to
    ``image`` or ``camera`` again (both are marked read-only), so an output may keep them as long as it likes.
    ``camera`` is the raw source frame (for the picture-in-picture); ``image`` is what the stages made.
    ``t_content`` is the capture time of the oldest content in ``image`` when that is older than the frame itself
    (an asynchronous stage's latest result, computed from an earlier frame); None means ``t_capture``. The
    end-to-end latency is measured from it: the age of what is shown.
    """

    image: np.ndarray
    index: int
    t_capture: float  # time.perf_counter() when the source delivered it
    camera: np.ndarray | None = None
    face: Face | None = None
    face_checked: bool = False  # True once a detector ran on this frame (face may still be None)
    t_content: float | None = None
