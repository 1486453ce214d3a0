"""The remote engine as one engine stage: the frame goes up, the newest avatar frame that came back comes out.

Being a :class:`~mirage_desktop.engine.stage.Stage` keeps everything local as it is: capture, the engine's slots
and metrics, and every output (preview, virtual camera, recorder) through the one output interface. The stage never
waits for the network: with no fresh avatar frame (connecting, remote restarting, link down) the camera frame passes
through and ``reason`` says why, so the local video keeps its frame rate.
"""

from __future__ import annotations

from typing import Any

import cv2

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.stage import Stage
from mirage_desktop.remote.client import RemoteClient

#: An avatar frame older than this is not shown again (the remote stalled): pass-through instead.
MAX_AGE_S = 1.0


class RemoteStage(Stage):
    name = "remote"
    label = "Remote round trip"

    def __init__(self, client: RemoteClient) -> None:
        super().__init__(enabled=True)
        self.client = client

    def prepare(self) -> None:
        self.client.start()

    def release(self) -> None:
        self.client.stop()

    def process(self, frame: Frame) -> Frame:
        self.client.submit(frame.image, frame.t_capture)
        image = self.client.latest(MAX_AGE_S)
        if image is None:
            self.reason = f"pass-through: {self.client.reason or 'remote engine not connected'}"
            return frame
        self.reason = ""
        h, w = frame.image.shape[:2]
        if image.shape[0] != h or image.shape[1] != w:  # the remote's output size differs: fit the local outputs
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        frame.image = image
        return frame

    def stats(self) -> dict[str, Any]:
        """The client's figures; this stage's latency is the round trip (what the user waits for), so the latency
        panel and the status line show it where a local stage's time would be."""
        out = self.client.stats().to_json()
        out["connection"] = out.pop("reason")  # the stage's own reason (with "pass-through: ") stays the reason
        rt = self.client.round_trip.summary()
        out.update(rt)
        return out
