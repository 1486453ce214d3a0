"""The video's delay, as the voice should follow it: a read-only hook the audio thread polls, never the frame path.

The figure is the age of what the virtual camera shows, taken when it writes each new frame (the capture time of
the content: an avatar result's own frame for an asynchronous stage), so it includes every stage, the output
thread and the camera's pacing. With the virtual camera off (WebRTC viewers only) it is the engine's end-to-end
figure for the newest frame. With the avatar off it is simply the pass-through delay. A remote engine's avatar
frames come back a round trip after their capture, which the local frame's age does not include: the round trip
is added while the remote's frames are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mirage_desktop.engine.metrics import LatencyWindow
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import Stage

#: The remote engine's stage name (remote/stage.py's; the audio layer sits below the remote client).
REMOTE_STAGE = "remote"


class VideoDelay:
    """Callable: the video's current delay in seconds, or None before the first frame. ``camera`` returns the
    virtual camera output (or None); ``round_trip`` the remote round trip while its frames are shown (or None)."""

    def __init__(self, engine: Engine, camera: Callable[[], Any] = lambda: None,
                 round_trip: Callable[[], float | None] | None = None) -> None:
        self.engine = engine
        self.camera = camera
        self.round_trip = round_trip

    def __call__(self) -> float | None:
        camera = self.camera()
        age = getattr(camera, "shown_age", None) if camera is not None and getattr(camera, "running", False) \
            else None
        if age is None:
            age = self.engine.metrics.end_to_end.latest()
        if age is None:
            return None
        extra = self.round_trip() if self.round_trip is not None else None
        return age + (extra or 0.0)


def round_trip_while_shown(stages: Iterable[Stage], round_trip: LatencyWindow) -> Callable[[], float | None]:
    """The remote round trip (its newest sample) while the remote stage shows its frames; None while it passes
    the camera through (connecting, link down: its ``reason`` says why), when the local age is the whole delay."""
    stage = next((s for s in stages if s.name == REMOTE_STAGE), None)

    def figure() -> float | None:
        if stage is None or stage.reason:
            return None
        return round_trip.latest()

    return figure
