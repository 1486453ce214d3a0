"""What the server reads from an SDP offer itself: sanity checks, and which media sections want to receive.

The directions come from the offer's text (RFC 8866 ``a=sendrecv|sendonly|recvonly|inactive``, default
``sendrecv``), so the server never reads aiortc's private transceiver state to decide where the avatar goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirage_desktop.webrtc.errors import BadRequest

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True)
class MediaSection:
    """One ``m=`` section of an offer, as the offerer sees it."""

    kind: str  # "video", "audio", "application"
    mid: str | None
    direction: str  # the offerer's direction: "recvonly" means it wants to receive

    @property
    def receives(self) -> bool:
        return self.direction in ("recvonly", "sendrecv")


def check_sdp(sdp: str) -> None:
    """Cheap sanity checks before aiortc parses the offer, so the error names what is wrong."""
    text = sdp.strip()
    if not text:
        raise BadRequest("The SDP offer is empty.")
    if not text.startswith("v=0"):
        raise BadRequest(f"Not an SDP offer: it must start with 'v=0', got {text[:20]!r}.")
    if "\nm=" not in text:
        raise BadRequest("The SDP offer has no media section (m=video or m=application).")
    if "a=ice-ufrag:" not in text or "a=fingerprint:" not in text:
        raise BadRequest("The SDP offer lacks ICE credentials or a DTLS fingerprint (a=ice-ufrag, a=fingerprint).")


def media_sections(sdp: str) -> list[MediaSection]:
    """The offer's media sections in order; a session-level direction is the default for every section."""
    session_direction = "sendrecv"
    sections: list[MediaSection] = []
    kind: str | None = None
    mid: str | None = None
    direction: str | None = None

    def close() -> None:
        if kind is not None:
            sections.append(MediaSection(kind, mid, direction or session_direction))

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close()
            kind, mid, direction = line[2:].split(" ", 1)[0], None, None
        elif line.startswith("a=mid:") and kind is not None:
            mid = line[len("a=mid:"):].strip()
        elif line[2:] in DIRECTIONS and line.startswith("a="):
            if kind is None:
                session_direction = line[2:]
            else:
                direction = line[2:]
    close()
    return sections


def receiving_video_mids(sdp: str) -> set[str | None]:
    """The mids of the video sections whose offerer wants to receive (where the avatar track goes)."""
    return receiving_mids(sdp, "video")


def receiving_mids(sdp: str, kind: str) -> set[str | None]:
    """The mids of the ``kind`` ("video", "audio") sections whose offerer wants to receive."""
    return {s.mid for s in media_sections(sdp) if s.kind == kind and s.receives}
