"""One snapshot of the engine's figures, typed: what the window, headless, ``/health``, ``/metrics``,
``/control/stats`` and the remote client read.

Readers use the attributes; :meth:`EngineStats.to_json` gives the documented ``--stats-json`` shape (the same keys,
in the same order, that every release wrote), and :meth:`EngineStats.from_json` reads it back (a remote engine's
``/control/stats``). A stage's own figures (``Stage.stats()``: backend, provider, mode...) and each output's counters
stay plain JSON dicts: they differ per stage and output, and only their readers know them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

#: The latency keys of a stage entry and of ``end_to_end``.
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")


@dataclass(frozen=True)
class Latency:
    """P50/P95/P99 in milliseconds over the recent window; None before the first sample."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Latency:
        data = data or {}
        return cls(*(data.get(key) for key in LATENCY_KEYS))


@dataclass(frozen=True)
class StageStats:
    """One stage: its switch, why it does not run (``""`` when it does), its latency, and its own figures."""

    enabled: bool
    reason: str
    label: str
    latency: Latency = Latency()
    #: runs on a thread of its own: its latency is its compute time, the video does not wait for it
    asynchronous: bool = False
    #: the stage's own JSON figures (``Stage.stats()``), after the keys above
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> Any:
        """What really runs the stage's networks, as the stage reports it (None when it does not say)."""
        return self.figures.get("backend")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled, "reason": self.reason, "label": self.label}
        if self.asynchronous:
            out["asynchronous"] = True
        out.update(self.latency.to_json())
        out.update(self.figures)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StageStats:
        """The entry as ``to_json`` writes it; a figure under a known key (a stage reporting its own ``p50_ms``)
        is that key's value."""
        known = {"enabled", "reason", "label", "asynchronous", *LATENCY_KEYS}
        return cls(enabled=bool(data.get("enabled")), reason=str(data.get("reason") or ""),
                   label=str(data.get("label") or ""),
                   latency=Latency.from_json(data), asynchronous=bool(data.get("asynchronous")),
                   figures={key: value for key, value in data.items() if key not in known})


@dataclass(frozen=True)
class GpuMemoryStats:
    """torch's own counters and the whole device from NVML, in MB; None (and ``available`` False) without a GPU."""

    torch_allocated_mb: float | None = None
    torch_reserved_mb: float | None = None
    device_used_mb: float | None = None
    device_total_mb: float | None = None
    available: bool = False

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> GpuMemoryStats:
        data = data or {}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class EngineStats:
    """The engine's figures at one moment (``Engine.stats()``)."""

    source: str
    device: str
    frames_in: int
    frames_out: int
    #: frames replaced in a latest-frame slot before anyone took them (the slots count them)
    dropped: int
    fps_in: float
    fps_out: float
    uptime_s: float
    stages: dict[str, StageStats]
    end_to_end: Latency
    gpu_memory: GpuMemoryStats
    #: the process's memory figures, passed through as the host-memory monitor reports them
    host_memory: dict[str, Any]
    #: each output's own counters (``Output.stats()``), by output name
    outputs: dict[str, dict[str, Any]]
    #: what really runs each stage's networks (a stage's ``backend`` figure): a fallback is visible here
    backends: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The ``--stats-json`` / ``/control/stats`` document."""
        return {
            "source": self.source,
            "device": self.device,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "fps_in": self.fps_in,
            "fps_out": self.fps_out,
            "uptime_s": self.uptime_s,
            "stages": {name: stage.to_json() for name, stage in self.stages.items()},
            "end_to_end": self.end_to_end.to_json(),
            "gpu_memory": self.gpu_memory.to_json(),
            "host_memory": dict(self.host_memory),
            "outputs": {name: dict(figures) for name, figures in self.outputs.items()},
            "backends": dict(self.backends),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineStats:
        """Read a ``to_json`` document back (a remote engine's ``/control/stats``); a missing field reads as zero,
        empty or unknown."""
        return cls(
            source=str(data.get("source", "")),
            device=str(data.get("device", "")),
            frames_in=int(data.get("frames_in", 0)),
            frames_out=int(data.get("frames_out", 0)),
            dropped=int(data.get("dropped", 0)),
            fps_in=float(data.get("fps_in", 0.0)),
            fps_out=float(data.get("fps_out", 0.0)),
            uptime_s=float(data.get("uptime_s", 0.0)),
            stages={name: StageStats.from_json(entry) for name, entry in (data.get("stages") or {}).items()},
            end_to_end=Latency.from_json(data.get("end_to_end")),
            gpu_memory=GpuMemoryStats.from_json(data.get("gpu_memory")),
            host_memory=dict(data.get("host_memory") or {}),
            outputs={name: dict(figures) for name, figures in (data.get("outputs") or {}).items()},
            backends=dict(data.get("backends") or {}),
        )
