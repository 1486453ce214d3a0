"""``mirage doctor`` and ``mirage-doctor``: check the whole setup, one line per check, the fix under each problem.

    mirage doctor [--json] [--models-dir DIR] [--settings FILE]

Exit status 0 when nothing blocks the live avatar, 1 when a check that blocks it failed, 2 for a usage error.
Reads the same settings file, ``MIRAGE_*`` variables and flags as ``mirage``; writes nothing (no log file either:
a separate entry point so it works where ``mirage`` itself would not start).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from mirage_desktop.doctor.run import diagnose, load_settings_for


def build_parser(prog: str = "mirage doctor") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Check Mirage's setup: GPU and driver, torch and ONNX Runtime, virtual camera, models, cameras, "
                    "settings and folders, and the remote engine when one is configured. Changes nothing.",
    )
    p.add_argument("--json", action="store_true",
                   help='write {"checks": [{"name", "status", "detail", "fix"}], "blocking": bool} instead of text')
    p.add_argument("--models-dir", type=Path, metavar="DIR", help="model directory (default: the settings')")
    p.add_argument("--settings", type=Path, metavar="FILE", help="settings file (default: user config dir)")
    p.add_argument("--no-cameras", action="store_true", help="do not open the cameras (one is in use elsewhere)")
    p.add_argument("--verbose", action="store_true", help="log what the checks do on stderr")
    return p


def main(argv: list[str] | None = None, *, out: TextIO | None = None, prog: str = "mirage doctor") -> int:
    out = out or sys.stdout
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR, format="%(levelname)s %(message)s")
    settings, verdict, path = load_settings_for(args.settings, args.models_dir)
    report = diagnose(settings, verdict, path, probe_cameras=not args.no_cameras)
    if args.json:
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    else:
        out.write(report.text())
    out.flush()
    return 1 if report.blocking else 0


def standalone() -> int:
    """The ``mirage-doctor`` console script (a console program on Windows too, where ``mirage`` is a windowed one)."""
    return main(prog="mirage-doctor")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(standalone())
