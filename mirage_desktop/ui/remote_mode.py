"""The window on a remote engine: the local engine has the remote stage, and the window's model switches,
Recalibrate and avatar choice go to the remote's ``/control`` endpoints (from worker threads, never the GUI's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource, Source
from mirage_desktop.remote.client import RemoteClient
from mirage_desktop.remote.connect import build_remote_engine
from mirage_desktop.remote.control import RemoteControl
from mirage_desktop.remote.target import RemoteUrlError, check_remote_url

Notify = Callable[[str, str], None]


class RemoteMode:
    def __init__(self, settings: Settings) -> None:
        target = check_remote_url(settings.remote_url)
        self.client = RemoteClient(target, settings.remote_token)
        self.control = RemoteControl(target, settings.remote_token)
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> tuple[RemoteMode | None, str]:
        """(mode, "") when a remote engine is chosen, (None, "") for this computer, (None, why) for a bad URL."""
        if not settings.remote_url:
            return None, ""
        try:
            return cls(settings), ""
        except RemoteUrlError as exc:
            return None, f"Remote engine not used: {exc}"

    def build_engine(self, source: Source) -> Engine:
        s = self.settings
        return build_remote_engine(self.client, source, lambda: DemoSource(s.output_width, s.output_height, s.fps))

    # ----------------------------------------------------------------------------------------- the remote's state
    def stage_entry(self, name: str) -> dict[str, Any]:
        remote = (self.client.remote_stats or {}).get("stages", {}).get(name)
        if remote is None:
            return {"enabled": False, "reason": "waiting for the remote engine", "label": name}
        return {"enabled": bool(remote.get("enabled")), "reason": remote.get("reason", ""),
                "label": remote.get("label", name)}

    def decorate(self, stats: dict[str, Any]) -> None:
        """Put the remote's own stages beside the round trip in a stats snapshot (the switches and the latency
        panel read them from there)."""
        remote = self.client.remote_stats
        if not remote:
            return
        stages = stats.setdefault("stages", {})
        for name, entry in remote.get("stages", {}).items():
            stages[name] = {**entry, "label": f"{entry.get('label') or name} (remote)"}
        if "remote" in stages:
            stages["remote"]["label"] = "Round trip"

    def round_trip_text(self) -> str:
        s = self.client.stats()
        if s["round_trip_p50_ms"] is None:
            return f"Remote: {s['reason'] or 'connecting...'}"
        return f"Round trip {s['round_trip_p50_ms']:.0f} ms (P95 {s['round_trip_p95_ms']:.0f} ms)"

    # -------------------------------------------------------------------------------------------------- actions
    def set_stage(self, pool: Any, name: str, enabled: bool, notify: Notify) -> None:
        pool.run(lambda: self.control.set_stages(**{name: enabled}),
                 on_error=lambda exc: notify("error", f"Remote engine: {exc}"))

    def recalibrate(self, pool: Any, notify: Notify) -> None:
        pool.run(self.control.recalibrate,
                 on_result=lambda _: notify("info", "Recalibrated on the remote engine."),
                 on_error=lambda exc: notify("error", f"Recalibrate on the remote engine failed: {exc}"))

    def upload_avatar(self, path: Path) -> tuple[Path, str]:
        """Worker thread: send the portrait (checked here and there); the window's avatar callbacks take the result."""
        self.control.upload_avatar(path)
        return path, ""
