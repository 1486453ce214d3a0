"""The link to a remote engine in figures: the ``remote`` block of ``--stats-json``, typed.

:meth:`LinkStats.to_json` writes the documented keys (``url``, ``connected``, ``frames_received``, the round trip,
``reconnects``, ...), and once the remote's own ``/control/stats`` has come, its per-stage figures beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mirage_desktop.engine.stats import EngineStats


@dataclass(frozen=True)
class LinkStats:
    url: str
    #: a session is up and the remote engine processes our frames
    connected: bool
    frames_received: int
    round_trip_p50_ms: float | None
    round_trip_p95_ms: float | None
    reconnects: int
    #: why there is no avatar from the remote now ("" while there is)
    reason: str
    frames_sent: int
    round_trip_samples: int
    echo_unmatched: int
    #: wall-clock times (``time.time``) each session began processing
    connected_at: tuple[float, ...]
    #: the remote engine's own figures (its ``/control/stats``), once fetched
    remote: EngineStats | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "connected": self.connected,
            "frames_received": self.frames_received,
            "round_trip_p50_ms": self.round_trip_p50_ms,
            "round_trip_p95_ms": self.round_trip_p95_ms,
            "reconnects": self.reconnects,
            "reason": self.reason,
            "frames_sent": self.frames_sent,
            "round_trip_samples": self.round_trip_samples,
            "echo_unmatched": self.echo_unmatched,
            "connected_at": list(self.connected_at),
        }
        remote = self.remote
        if remote is not None:
            out["remote_stages"] = {
                name: {"enabled": st.enabled, "reason": st.reason, "p50_ms": st.latency.p50_ms,
                       "p95_ms": st.latency.p95_ms}
                for name, st in remote.stages.items()
            }
            out["remote_end_to_end"] = remote.end_to_end.to_json()
            out["remote_fps_out"] = remote.fps_out
            out["remote_device"] = remote.device
        return out
