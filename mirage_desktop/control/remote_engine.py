"""A remote Mirage engine behind :class:`~.engine_control.EngineControl`: capture, preview and outputs stay on this
computer, whose engine has the one :class:`~mirage_desktop.remote.stage.RemoteStage` in place of the model stages;
the switches, Recalibrate and the avatar act on the remote through its ``/control`` endpoints. Those calls cross the
network (:attr:`RemoteEngine.blocking`); everything else reads what the link last heard from the remote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import cast

from mirage_desktop.animation_options import AnimationOptions
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import Source
from mirage_desktop.engine.stage import StageState, StageStatus
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.remote.control import RemoteControlError
from mirage_desktop.remote.link import RemoteLink
from mirage_desktop.remote.link_stats import LinkStats
from mirage_desktop.remote.stage import RemoteStage
from mirage_desktop.stages.avatar.stage import AvatarError, AvatarStage
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.stages.specs import STAGE_SPECS

#: The round-trip window also appears among the engine's latency windows, so /metrics of the client exports it as
#: ``mirage_stage_latency_seconds{stage="remote_round_trip"}`` (histogram and quantiles) with no code of its own.
ROUND_TRIP_METRIC = "remote_round_trip"
#: Remote stage states the window's switches understand (anything else reads as "loading").
KNOWN_STATES = ("off", "loading", "ready", "unavailable", "failed")

logger = logging.getLogger(__name__)


class RemoteEngine:
    """The engine of a remote run over one :class:`RemoteLink` (its video client starts with the engine)."""

    blocking = True
    where = "the remote engine"

    def __init__(self, link: RemoteLink, source: Source, fallback_source: Callable[[], Source], *,
                 animation: AnimationOptions | None = None, every_frame: bool = False,
                 max_frames: int | None = None) -> None:
        self.link = link
        #: the options the user chose; the sessions begun so far (counted by the link's event loop, which must
        #: never wait for the lock below); and in which session the remote was last told which options. A session
        #: that begins gets the whole set again (the remote may have restarted), off every caller's thread.
        self._animation = animation or AnimationOptions()
        self._sessions = 0
        self._told: tuple[int, AnimationOptions] | None = None
        self._animation_lock = threading.Lock()  # one PUT at a time, in order
        link.client.on_processing = self._session_began
        self.engine = Engine(source, [RemoteStage(link.client)], every_frame=every_frame, max_frames=max_frames,
                             device="remote", fallback_source=fallback_source)
        self.engine.metrics.stages[ROUND_TRIP_METRIC] = link.client.round_trip
        self._final: LinkStats | None = None  # the link's figures as the control closed, before hanging up

    # ------------------------------------------------------------------------------------------------ stages
    @property
    def avatar_stage(self) -> AvatarStage | None:
        return None

    @property
    def face_stage(self) -> FaceDetectionStage | None:
        return None

    def has_stage(self, name: str) -> bool:
        return any(spec.name == name for spec in STAGE_SPECS)

    def _entry(self, name: str) -> dict[str, object] | None:
        entry = (self.link.client.remote_stages or {}).get(name)
        return entry if isinstance(entry, dict) else None

    def stage_enabled(self, name: str) -> bool:
        entry = self._entry(name)
        return bool(entry and entry.get("enabled"))

    def stage_status(self, name: str) -> StageStatus:
        """The remote stage's state and reason as it reports them. No model group: downloading here would not
        help; the remote's reason says what to run there."""
        entry = self._entry(name)
        if entry is None:
            reason = self.link.auth_error and "the remote engine refused the token" or "waiting for the remote engine"
            return StageStatus("loading", reason)
        reported = entry.get("state")
        state: StageState = (cast("StageState", reported) if reported in KNOWN_STATES else
                             "off" if not entry.get("enabled") else "failed" if entry.get("reason") else "ready")
        reason = str(entry.get("reason") or "")
        return StageStatus(state, f"{reason} (on the remote engine)" if reason and state != "off" else reason)

    def set_stage_enabled(self, name: str, enabled: bool) -> None:
        """Blocks: ``PUT /control/stages``; RemoteControlError, its message starting with "Remote engine:"."""
        try:
            self.link.control.set_stages(**{name: bool(enabled)})
        except RemoteControlError as exc:
            raise RemoteControlError(f"Remote engine: {exc}", exc.status) from exc

    def set_animation(self, options: AnimationOptions) -> None:
        """Blocks: ``PUT /control/animation`` with the options that changed (all of them when the remote was not
        told yet); RemoteControlError, its message starting with "Remote engine:"."""
        with self._animation_lock:
            self._animation = options
            session, told = self._sessions, self._told
            changes = options.changes_from(told[1]) if told is not None and told[0] == session else options.to_json()
            if not changes:
                return
            try:
                self.link.control.set_animation(**changes)
            except RemoteControlError as exc:
                raise RemoteControlError(f"Remote engine: {exc}", exc.status) from exc
            self._told = (session, options)

    def _session_began(self) -> None:
        """A (re)connected remote engine may have restarted with its defaults: it gets the user's options, on a
        thread of its own. Called on the link's event loop: it takes no lock (a PUT in flight may hold it)."""
        self._sessions += 1
        threading.Thread(target=self._tell_animation, name="remote-animation", daemon=True).start()

    def _tell_animation(self) -> None:
        try:
            self.set_animation(self._animation)
        except Exception as exc:  # the window's Animation card says the next error; the video goes on
            logger.warning("The remote engine did not take the Animation options: %s", exc)

    def models_arrived(self, name: str) -> None:
        """Nothing to do: the remote engine has its own models."""

    def recalibrate(self) -> tuple[str, str]:
        """Blocks: ``POST /control/recalibrate``."""
        try:
            self.link.control.recalibrate()
        except RemoteControlError as exc:
            return "error", f"Recalibrate on the remote engine failed: {exc}"
        return "info", "Recalibrated on the remote engine: your current pose is the neutral pose now."

    def set_avatar(self, path: Path, shown_as: str) -> str:
        """Blocks: the upload, checked here and there."""
        try:
            self.link.control.upload_avatar(path)
        except RemoteControlError as exc:
            raise AvatarError(f"The remote engine did not take {shown_as}: {exc}") from exc
        return ""

    # ---------------------------------------------------------------------------------------------- figures
    def stats(self) -> EngineStats:
        """This computer's engine, with the remote's own stages beside the round trip (the switches and the
        latency panel read them from there)."""
        stats = self.engine.stats()
        stages = dict(stats.stages)
        remote = self.link.client.remote_stats
        if remote is not None:
            for name, entry in remote.stages.items():
                stages[name] = replace(entry, label=f"{entry.label or name} (remote)")
        if "remote" in stages:
            stages["remote"] = replace(stages["remote"], label="Round trip")
        return replace(stats, stages=stages)

    def link_stats(self) -> LinkStats | None:
        return self._final if self._final is not None else self.link.client.stats()

    def status_text(self) -> str:
        """The round trip, where a local engine shows its device."""
        s = self.link.client.stats()
        if s.round_trip_p50_ms is None or s.round_trip_p95_ms is None:
            return f"Remote: {s.reason or 'connecting...'}"
        return f"Round trip {s.round_trip_p50_ms:.0f} ms (P95 {s.round_trip_p95_ms:.0f} ms)"

    def refusal(self) -> str | None:
        error = self.link.auth_error
        if error is None:
            return None
        return (f"The remote engine at {self.link.target.base} refused the token ({error}). Open Engine... and "
                "paste the token that engine printed when it started; the video passes through meanwhile.")

    def inference_note(self) -> str:
        return "A remote engine runs its networks as its own --backend and --precision say"

    # --------------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the engine, keep the link's last figures, hang up."""
        self.engine.stop()
        if self._final is None:
            self._final = self.link.client.stats()
        self.link.stop()
