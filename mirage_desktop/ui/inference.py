"""How the Animate stage's networks run: backend and precision choosers, and what actually runs each network.

The choice is the settings' ``liveportrait_backend`` / ``liveportrait_precision`` (the same as ``--backend`` and
``--precision``); the window hands a change to the session, which remembers it and reloads the stage. The line
under the choosers shows what the stage reports is running now (a fallback or a precision guard shows there), in
plain words: "ONNX Runtime: F M G · PyTorch: W · fp32".
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from mirage_desktop.config import LIVEPORTRAIT_BACKENDS, LIVEPORTRAIT_PRECISIONS

BACKEND_LABELS = {"auto": "Fastest (auto)", "torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
PRECISION_LABELS = {"auto": "Auto precision", "fp32": "Full precision", "bf16": "bf16 (CPU)",
                    "fp16": "Half (GPU)"}
ENGINE_NAMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
#: the networks the line names (the retargeting MLPs take microseconds and follow the others)
SHOWN_MODULES = ("F", "M", "W", "G")
TIP = ("Fastest (auto) measures each network once on this computer and runs it on whatever is fastest while "
       "still exact; changing this reloads the avatar. Auto precision uses reduced precision only where the "
       "hardware has it (a GPU, or a CPU with bf16) and switches a network back to full precision by itself if "
       "its output goes wrong.")
assert set(BACKEND_LABELS) == set(LIVEPORTRAIT_BACKENDS) and set(PRECISION_LABELS) == set(LIVEPORTRAIT_PRECISIONS)


def describe_backends(running: Mapping[str, str] | None) -> str:
    """``{"F": "onnxruntime fp32", ...}`` as "ONNX Runtime: F M G · PyTorch: W · fp32"; "" before a load."""
    if not running:
        return ""
    groups: dict[str, list[str]] = {}
    precisions: list[str] = []
    for module in SHOWN_MODULES:
        engine, _, precision = str(running.get(module, "")).partition(" ")
        if not engine:
            continue
        groups.setdefault(ENGINE_NAMES.get(engine, engine), []).append(module)
        if precision and precision not in precisions:
            precisions.append(precision)
    parts = [f"{name}: {' '.join(mods)}" for name, mods in groups.items()]
    return " · ".join(parts + ["/".join(precisions)] if precisions else parts)


class InferenceChooser(QWidget):
    """Backend and precision of the Animate stage; emits (backend, precision) when the user changes either."""

    changed = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        row = QHBoxLayout()
        row.setSpacing(6)
        label = QLabel("Runs on")
        label.setObjectName("hint")
        row.addWidget(label)
        self.backend = QComboBox()
        for value in LIVEPORTRAIT_BACKENDS:
            self.backend.addItem(BACKEND_LABELS[value], value)
        self.precision = QComboBox()
        for value in LIVEPORTRAIT_PRECISIONS:
            self.precision.addItem(PRECISION_LABELS[value], value)
        for combo in (self.backend, self.precision):
            combo.setToolTip(TIP)
            combo.activated.connect(self._emit)
            row.addWidget(combo, 1)
        outer.addLayout(row)
        self.running = QLabel("")
        self.running.setObjectName("hint")
        self.running.setWordWrap(True)
        self.running.setToolTip("What runs each network of the avatar now: F appearance, M motion, W warping, "
                                "G generator")
        outer.addWidget(self.running)

    def show_choice(self, backend: str, precision: str) -> None:
        """Show the settings' choice without emitting."""
        self.backend.setCurrentIndex(max(0, self.backend.findData(backend)))
        self.precision.setCurrentIndex(max(0, self.precision.findData(precision)))

    def show_running(self, running: Mapping[str, str] | None) -> None:
        text = describe_backends(running)
        if text != self.running.text():
            self.running.setText(text)
        self.running.setVisible(bool(text))

    def value(self) -> tuple[str, str]:
        return str(self.backend.currentData()), str(self.precision.currentData())

    def _emit(self, _index: int) -> None:
        self.changed.emit(*self.value())
