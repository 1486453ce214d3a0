"""``mirage-models``: see, fetch and check the model files.

    mirage-models --status | status      table of every file; exit 0 when all are good, else 1
    mirage-models download [scrfd|liveportrait|all]
    mirage-models verify                 re-hash what is there; same table and exit code as status
    mirage-models path                   print the model directory

Every subcommand takes ``--models-dir DIR`` (default: the settings' ``models_dir``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mirage_desktop.models.download import DownloadReport, ProgressEvent, download, iter_licences
from mirage_desktop.models.status import FileStatus, format_bytes, status, total_to_download, verify
from mirage_desktop.models.registry import GROUPS, REGISTRY, RegistryEntry, entries_for

logger = logging.getLogger(__name__)


def _default_models_dir() -> Path:
    from mirage_desktop.config import load_settings

    return load_settings().models_dir


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="model directory (default: the settings' models_dir)",
    )
    parser = argparse.ArgumentParser(
        prog="mirage-models",
        parents=[common],
        description="Download and check the model files Mirage Desktop needs (SCRFD, LivePortrait).",
    )
    parser.add_argument("--status", action="store_true", help="same as the 'status' command")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("status", parents=[common], help="show every model file and what is still to download")
    dl = sub.add_parser("download", parents=[common], help="download model files (resumable, verified)")
    dl.add_argument("group", nargs="?", default="all", choices=GROUPS, help="which models (default: all)")
    dl.add_argument("--retries", type=int, default=3, help="retries on network errors (default: 3)")
    sub.add_parser("verify", parents=[common], help="re-hash the files that are there")
    sub.add_parser("path", parents=[common], help="print the model directory")
    return parser


def _state_label(s: FileStatus) -> str:
    return s.state if s.verified else f"{s.state}*"


def print_table(statuses: Sequence[FileStatus], models_dir: Path, out: TextIO) -> None:
    """The status table: state, file, size, licence; then the total still to download."""
    rows = [("STATE", "FILE", "SIZE", "LICENCE")]
    for s in statuses:
        size = s.entry.size if s.entry.size is not None else s.size_on_disk
        rows.append((_state_label(s), s.entry.local_path, format_bytes(size), s.entry.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"Model directory: {models_dir}", file=out)
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}", file=out)
    for s in statuses:
        if s.detail and not s.ok:
            print(f"  {s.entry.local_path}: {s.detail}", file=out)
    if any(not s.verified for s in statuses):
        print("* unverified: no pinned size/sha256 in the registry, so the file cannot be checked.", file=out)
    todo = [s for s in statuses if not s.ok]
    known, unknown = total_to_download(statuses)
    extra = f" + {unknown} file(s) of unknown size" if unknown else ""
    print(f"Total to download: {len(todo)} file(s), {format_bytes(known)}{extra}", file=out)
    if todo:
        print("Run: mirage-models download all", file=out)


def _show_licences(entries: Sequence[RegistryEntry], out: TextIO) -> None:
    print("Licences of the files to download (by downloading you accept them):", file=out)
    for licence, url, group in iter_licences(entries):
        names = ", ".join(e.name for e in group)
        print(f"  - {licence}\n    {url}\n    files: {names}", file=out)


class _Bars:
    """tqdm bars driven by ProgressEvents (one bar per file)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bar = None
        self.current: RegistryEntry | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        from tqdm import tqdm

        if ev.phase == "skip":
            print(f"ok       {ev.entry.local_path} (already present)", file=self.out)
            return
        if ev.phase in ("start", "download") and (self.bar is None or self.current is not ev.entry):
            self.close()
            self.current = ev.entry
            desc = f"[{ev.file_index + 1}/{ev.file_count}] {ev.entry.name}"
            self.bar = tqdm(
                total=ev.bytes_total,
                initial=ev.bytes_done,
                unit="B",
                unit_scale=True,
                desc=desc,
                file=self.out,
                leave=True,
                dynamic_ncols=True,
            )
        if self.bar is not None and ev.phase == "download":
            self.bar.update(ev.bytes_done - self.bar.n)
        if ev.phase == "verify" and self.bar is not None:
            self.bar.set_postfix_str("checking sha256")
        if ev.phase == "retry":
            self.close()
            print(f"retry    {ev.entry.local_path}: {ev.message}", file=self.out)
        if ev.phase in ("done", "failed"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.current = None


def _print_report(report: DownloadReport, out: TextIO) -> None:
    for entry in report.downloaded:
        print(f"done     {entry.local_path}", file=out)
    for entry, err in report.failed:
        print(f"FAILED   {entry.local_path}\n  {err}", file=out)
    for entry in report.not_attempted:
        print(f"skipped  {entry.local_path} (not tried after the error above)", file=out)
    if report.cancelled:
        print("Cancelled. Partial files are kept; run the same command to resume.", file=out)


def main(
    argv: list[str] | None = None, *, registry: Sequence[RegistryEntry] | None = None, out: TextIO | None = None
) -> int:
    """Console entry point. ``registry`` and ``out`` are for tests (the real registry and stdout by default)."""
    out = out or sys.stdout
    reg = tuple(REGISTRY if registry is None else registry)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    models_dir = Path(getattr(args, "models_dir", None) or _default_models_dir()).expanduser()
    command = args.command or ("status" if args.status else None)
    if command is None:
        _parser().print_help(out)
        return 2
    if command == "path":
        print(models_dir, file=out)
        return 0
    if command in ("status", "verify"):
        statuses = (verify if command == "verify" else status)(models_dir, reg)
        print_table(statuses, models_dir, out)
        return 0 if all(s.ok for s in statuses) else 1
    # download
    wanted = entries_for(args.group, reg)
    _show_licences(wanted, out)
    bars = _Bars(out)
    cancel = threading.Event()
    try:
        report = download(args.group, models_dir, bars, cancel, registry=reg, retries=args.retries)
    except KeyboardInterrupt:
        cancel.set()
        bars.close()
        print("\nInterrupted. Partial files are kept; run the same command to resume.", file=out)
        return 130
    finally:
        bars.close()
    _print_report(report, out)
    final = status(models_dir, wanted)
    print_table(final, models_dir, out)
    return 0 if report.ok and all(s.ok for s in final) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
