"""Reading recordings back with PyAV, the peer library that is the oracle for what plays."""

from __future__ import annotations

from pathlib import Path

import av


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes; a file cut mid-fragment (kill -9, a full disk) ends in one undecodable packet, which is
    allowed."""
    n = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                n += 1
        except av.error.InvalidDataError:
            pass
    return n
