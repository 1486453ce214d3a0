"""Logging: a rotating file in the user log dir (for support) plus warnings on the console."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def setup_logging(log_dir: Path, *, console_level: int = logging.WARNING, verbose: bool = False) -> Path | None:
    """Attach the handlers once; returns the log file path, or None when the folder cannot be written."""
    root = logging.getLogger()
    if getattr(root, "_mirage_configured", False):
        return getattr(root, "_mirage_log_file", None)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else console_level)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    log_file: Path | None = log_dir / "mirage.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    except OSError:
        log_file = None
    root._mirage_configured = True  # type: ignore[attr-defined]
    root._mirage_log_file = log_file  # type: ignore[attr-defined]
    return log_file
