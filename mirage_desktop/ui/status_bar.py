"""The window's status bar: why something does not run, where the frames are computed (or the round trip to a
remote engine), the output rate and the dropped frames."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar

from mirage_desktop.engine.stats import EngineStats


class EngineStatus:
    """The status bar's labels, refreshed from one stats snapshot."""

    def __init__(self, bar: QStatusBar, where: str) -> None:
        bar.setSizeGripEnabled(False)
        self.reason = QLabel("")
        self.reason.setObjectName("statusReason")
        self.device = QLabel(where)
        self.fps = QLabel("– fps")
        self.dropped = QLabel("0 dropped")
        bar.addWidget(self.reason, 1)
        bar.addPermanentWidget(self.device)
        bar.addPermanentWidget(self.fps)
        bar.addPermanentWidget(self.dropped)
        self._refusal: str | None = None

    def show(self, stats: EngineStats, reason: str, where: str) -> None:
        self.reason.setText(reason)
        self.reason.setToolTip(reason)
        self.device.setText(where)
        self.fps.setText(f"{stats.fps_out:.1f} fps")
        self.dropped.setText(f"{stats.dropped} dropped")

    def forget_refusal(self) -> None:
        """Another engine: its refusal is news again."""
        self._refusal = None

    def new_refusal(self, refusal: str | None) -> str | None:
        """``refusal`` the first time the engine refuses us (again after it accepted us meanwhile), else None: the
        banner says it once."""
        if refusal == self._refusal:
            return None
        self._refusal = refusal
        return refusal
