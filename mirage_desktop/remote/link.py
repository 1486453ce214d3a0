"""One remote engine as the session sees it: the video link (:class:`RemoteClient`), its JSON controls
(:class:`RemoteControl`), and the remote's state read back for the window and the stats.

The session holds one of these instead of the local model stages when a remote URL is given; the local engine then
has the single :class:`RemoteStage`, and everything the user switches goes to the remote's ``/control`` endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiortc import RTCIceServer

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.engine.stage import StageStatus
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.remote.client import RemoteClient
from mirage_desktop.remote.control import RemoteControl
from mirage_desktop.remote.stage import RemoteStage
from mirage_desktop.remote.target import RemoteTarget, check_remote_url

#: The round-trip window also appears among the engine's latency windows, so /metrics of the client exports it as
#: ``mirage_stage_latency_seconds{stage="remote_round_trip"}`` (histogram and quantiles) with no code of its own.
ROUND_TRIP_METRIC = "remote_round_trip"
#: Remote stage states the window's switches understand (anything else reads as "loading").
KNOWN_STATES = ("off", "loading", "ready", "unavailable", "failed")


class RemoteLink:
    """The video client and the controls of one remote engine, with one token."""

    def __init__(self, target: RemoteTarget, token: str, ice_servers: Sequence[RTCIceServer] = ()) -> None:
        self.target = target
        self.client = RemoteClient(target, token, ice_servers)
        self.control = RemoteControl(target, token)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteLink | None:
        """The remote engine the settings choose (the window's Engine choice), None for this computer;
        :class:`~mirage_desktop.remote.target.RemoteUrlError` for a URL that cannot be used."""
        if not settings.remote_url:
            return None
        return cls(check_remote_url(settings.remote_url), settings.remote_token)

    @property
    def auth_error(self) -> str | None:
        """Why the remote refused the token, while it does; None otherwise."""
        return self.client.auth_error

    def build_engine(self, source: Source, fallback_source: Callable[[], Source], *, every_frame: bool = False,
                     max_frames: int | None = None) -> Engine:
        """The local engine of a remote run: capture and outputs here, one stage that is the remote engine."""
        engine = Engine(source, [RemoteStage(self.client)], every_frame=every_frame, max_frames=max_frames,
                        device="remote", fallback_source=fallback_source)
        engine.metrics.stages[ROUND_TRIP_METRIC] = self.client.round_trip
        return engine

    def stop(self) -> None:
        self.client.stop()

    # ------------------------------------------------------------------------------------- the remote's state
    def _entry(self, name: str) -> dict[str, Any] | None:
        stages = self.client.remote_stages or {}
        entry = stages.get(name)
        return entry if isinstance(entry, dict) else None

    def stage_enabled(self, name: str) -> bool:
        entry = self._entry(name)
        return bool(entry and entry.get("enabled"))

    def stage_status(self, name: str) -> StageStatus:
        """The remote stage's state and reason as it reports them. No model group: downloading here would not
        help; the remote's reason says what to run there."""
        entry = self._entry(name)
        if entry is None:
            reason = self.client.auth_error and "the remote engine refused the token" or "waiting for the remote engine"
            return StageStatus("loading", reason)
        state = entry.get("state")
        if state not in KNOWN_STATES:
            state = "off" if not entry.get("enabled") else "failed" if entry.get("reason") else "ready"
        reason = str(entry.get("reason") or "")
        return StageStatus(state, f"{reason} (on the remote engine)" if reason and state != "off" else reason)

    def decorate(self, stats: EngineStats) -> EngineStats:
        """``stats`` with the remote's own stages beside the round trip (the switches and the latency panel read
        them from there)."""
        stages = dict(stats.stages)
        remote = self.client.remote_stats
        if remote is not None:
            for name, entry in remote.stages.items():
                stages[name] = replace(entry, label=f"{entry.label or name} (remote)")
        if "remote" in stages:
            stages["remote"] = replace(stages["remote"], label="Round trip")
        return replace(stats, stages=stages)

    def round_trip_text(self) -> str:
        s = self.client.stats()
        if s.round_trip_p50_ms is None or s.round_trip_p95_ms is None:
            return f"Remote: {s.reason or 'connecting...'}"
        return f"Round trip {s.round_trip_p50_ms:.0f} ms (P95 {s.round_trip_p95_ms:.0f} ms)"
