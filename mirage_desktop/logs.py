"""Logging: a rotating file in the user log dir (for support) plus warnings on the console."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"

_configured = False  # the handlers are attached once per process
_log_file: Path | None = None


def setup_logging(log_dir: Path, *, console_level: int = logging.WARNING, verbose: bool = False) -> Path | None:
    """Attach the handlers once; returns the log file path, or None when the folder cannot be written."""
    global _configured, _log_file
    if _configured:
        return _log_file
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else console_level)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    log_file: Path | None = None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "mirage.log"
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
        log_file = path
    except OSError:
        pass
    _configured, _log_file = True, log_file
    return log_file
