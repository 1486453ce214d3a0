"""Where the time goes: P50 and P95 latency per stage and end to end over the last minute, plus FPS and GPU memory.

The window feeds it one ``engine.stats()`` snapshot about twice a second from a QTimer on the GUI thread; each
update shifts a 120-point history per series and redraws a handful of short curves, which costs next to nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from mirage_desktop.engine.stats import EngineStats, GpuMemoryStats

HISTORY_SECONDS = 60.0
UPDATE_INTERVAL_S = 0.5
HISTORY_POINTS = int(HISTORY_SECONDS / UPDATE_INTERVAL_S)

#: Colours by series; unknown stages take the next free one.
SERIES_COLORS: dict[str, str] = {"end_to_end": "#e8eaf0", "scrfd": "#4fc3f7", "liveportrait": "#ffb74d",
                                 "audio_delay": "#81c784"}
#: The Mirage Microphone's line: the delay the voice has, while it is on (a gap while it is off).
AUDIO_SERIES = "audio_delay"
_SPARE_COLORS = ("#81c784", "#ba68c8", "#f06292", "#aed581")
PLOT_BACKGROUND = "#15171c"


def _ms(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


class _Series:
    """P50 and P95 history for one stage (or end to end) and the two curves that draw it."""

    def __init__(self, plot: pg.PlotItem, key: str, label: str, color: str, x: np.ndarray) -> None:
        self.key = key
        self.p50 = np.full(HISTORY_POINTS, np.nan)
        self.p95 = np.full(HISTORY_POINTS, np.nan)
        width = 2.2 if key == "end_to_end" else 1.6
        self.curve50 = plot.plot(x, self.p50, pen=pg.mkPen(color, width=width), name=label, connect="finite")
        self.curve95 = plot.plot(
            x, self.p95, pen=pg.mkPen(color, width=1.2, style=Qt.PenStyle.DashLine), connect="finite"
        )

    def push(self, p50: float, p95: float, x: np.ndarray) -> None:
        self.p50[:-1] = self.p50[1:]
        self.p95[:-1] = self.p95[1:]
        self.p50[-1] = p50
        self.p95[-1] = p95
        self.curve50.setData(x, self.p50, connect="finite")
        self.curve95.setData(x, self.p95, connect="finite")


class _Figure(QFrame):
    """A small caption over a big number."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("figure")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(0)
        self.caption = QLabel(caption)
        self.caption.setObjectName("figureCaption")
        self.value = QLabel("–")
        self.value.setObjectName("figureValue")
        self.detail = QLabel("")
        self.detail.setObjectName("figureDetail")
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.detail)

    def set(self, value: str, detail: str = "") -> None:
        self.value.setText(value)
        self.detail.setText(detail)


class LatencyPanel(QWidget):
    """A latency plot on the left and the headline figures on the right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("latencyPanel")
        self._x = np.linspace(-HISTORY_SECONDS + UPDATE_INTERVAL_S, 0.0, HISTORY_POINTS)
        self.updates = 0

        self.plot_widget = pg.PlotWidget(background=PLOT_BACKGROUND)
        self.plot_widget.setMinimumHeight(150)
        plot = self.plot_widget.getPlotItem()
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.12)
        plot.setXRange(-HISTORY_SECONDS, 0.0, padding=0.0)
        plot.enableAutoRange(axis="y")
        plot.setLimits(yMin=0.0)
        axis_pen = pg.mkPen("#6b7280")
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(axis_pen)
            axis.setTextPen(pg.mkPen("#9aa1ad"))
        plot.setLabel("left", "ms")
        plot.getAxis("left").enableAutoSIPrefix(False)  # "ms (x0.001)" reads badly: sub-ms values stay in ms
        plot.setLabel("bottom", "seconds ago  (solid P50, dashed P95)")
        self._legend = plot.addLegend(offset=(8, 6), labelTextColor="#c9ced8", brush=pg.mkBrush(21, 23, 28, 200))
        self._plot = plot
        self.series: dict[str, _Series] = {}
        self._add_series("end_to_end", "End to end")

        self.fps = _Figure("FPS")
        self.latency = _Figure("End to end")
        self.memory = _Figure("GPU memory")
        figures = QGridLayout()
        figures.setSpacing(6)
        figures.addWidget(self.fps, 0, 0)
        figures.addWidget(self.latency, 1, 0)
        figures.addWidget(self.memory, 2, 0)
        side = QWidget()
        side.setLayout(figures)
        side.setFixedWidth(170)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(side)

    def _add_series(self, key: str, label: str) -> _Series:
        color = SERIES_COLORS.get(key) or _SPARE_COLORS[len(self.series) % len(_SPARE_COLORS)]
        series = _Series(self._plot, key, label, color, self._x)
        self.series[key] = series
        return series

    def values(self, key: str, which: str = "p50") -> np.ndarray:
        """The finite history of one series (``which`` is ``p50`` or ``p95``)."""
        data = getattr(self.series[key], which)
        return data[np.isfinite(data)].copy()

    def update_stats(self, stats: EngineStats) -> None:
        """Append one snapshot of ``Engine.stats()``."""
        x = self._x
        e2e = stats.end_to_end
        self.series["end_to_end"].push(_ms(e2e.p50_ms), _ms(e2e.p95_ms), x)
        for name, entry in stats.stages.items():
            series = self.series.get(name) or self._add_series(name, str(entry.label or name))
            if entry.enabled and not entry.reason:
                series.push(_ms(entry.latency.p50_ms), _ms(entry.latency.p95_ms), x)
            else:  # off or not running: a gap, not a stale line
                series.push(math.nan, math.nan, x)
        audio = stats.outputs.get("microphone")
        if audio is not None or AUDIO_SERIES in self.series:
            series = self.series.get(AUDIO_SERIES) or self._add_series(AUDIO_SERIES, "Audio delay")
            audio = audio or {}
            series.push(_ms(audio.get("delay_actual_ms")), math.nan, x)
        self.updates += 1

        fps_out = float(stats.fps_out or 0.0)
        fps_in = float(stats.fps_in or 0.0)
        self.fps.set(f"{fps_out:.1f}", f"camera {fps_in:.1f} fps")
        p50, p95 = _ms(e2e.p50_ms), _ms(e2e.p95_ms)
        if math.isnan(p50):
            self.latency.set("–", "no frames yet")
        else:
            self.latency.set(f"{p50:.1f} ms", f"P95 {p95:.1f} ms")
        self.memory.set(*format_gpu_memory(stats.gpu_memory))


def format_gpu_memory(gpu: GpuMemoryStats) -> tuple[str, str]:
    """(headline, detail) for the GPU memory figure; honest "n/a" without an NVIDIA GPU."""
    used, total = gpu.device_used_mb, gpu.device_total_mb
    torch_mb = gpu.torch_allocated_mb
    if used is not None and total:
        detail = f"of {total / 1024:.1f} GB"
        if torch_mb is not None:
            detail += f" · torch {torch_mb:.0f} MB"
        return f"{used / 1024:.2f} GB", detail
    if torch_mb is not None:
        return f"{torch_mb:.0f} MB", "torch allocated"
    return "n/a", "no CUDA device"
