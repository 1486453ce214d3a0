"""The settings file and the folders Mirage writes: the settings readable (loaded as ``mirage`` loads them, without
moving a bad file aside), the model, cache, log and settings folders writable, and room on disk for what is still to
download. Writability is proven with a temporary file that is deleted again; nothing else is written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from mirage_desktop.config import ENV_VARS, ConfigError, Settings, checked_setting, default_settings_file, load_settings
from mirage_desktop.doctor.check import FAIL, OK, WARN, Check
from mirage_desktop.models.registry import REGISTRY, RegistryEntry
from mirage_desktop.models.status import format_bytes

SETTINGS, STORAGE = "settings", "storage"
#: room the first use of the ONNX backend needs beyond the downloads (the exported networks, TensorRT's engines)
EXPORT_HEADROOM = 1_000_000_000


def settings_path(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """The file ``mirage`` reads: ``--settings``, else ``MIRAGE_SETTINGS``, else the user config dir's."""
    return explicit or Path(env.get("MIRAGE_SETTINGS", "") or default_settings_file())


def load(path: Path, env: Mapping[str, str]) -> tuple[Settings, Check]:
    """The settings as ``mirage`` would run with them, and the verdict on the file and the ``MIRAGE_*`` variables.
    A variable ``mirage`` refuses fails (it would not start); the settings then come without the variables."""
    used = [var for var in ENV_VARS if var in env]
    try:
        settings = load_settings(path, env, backup=False)
    except ConfigError as exc:
        bad = [var for var in used if not _valid(var, env[var])]
        settings = load_settings(path, {k: v for k, v in env.items() if k not in bad}, backup=False)
        fix = f"unset {' and '.join(bad)} or give it a valid value" if bad else "correct the value named above"
        return settings, Check(SETTINGS, FAIL, f"mirage refuses to start: {exc}", fix)
    variables = f"; from the environment: {', '.join(used)}" if used else ""
    problems: Sequence[str] = settings.__dict__.get("load_problems", [])
    if problems:
        fix = (f"make {path} readable for this user (chmod u+rw {path})" if not os.access(path, os.R_OK)
               else f"correct {path} by hand (JSON), or delete it to start from the defaults; Mirage moves a file "
                    "it cannot use fully aside at its next start")
        return settings, Check(SETTINGS, WARN, f"{path}: {' '.join(problems)}{variables}", fix)
    if not path.exists():
        return settings, Check(SETTINGS, OK, f"No settings file at {path} yet: the defaults{variables}")
    return settings, Check(SETTINGS, OK, f"{path} read{variables}")


def _valid(var: str, value: str) -> bool:
    try:
        checked_setting(ENV_VARS[var], value, f"environment variable {var}")
        return True
    except ConfigError:
        return False


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable(path: Path) -> tuple[bool, str]:
    """(whether Mirage can write into ``path``, how that was found): a folder that exists is tried with a temporary
    file (deleted at once); one that does not is judged by the nearest folder that exists, which Mirage would
    create it under."""
    path = Path(path)
    if path.is_dir():
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
            return True, "writable"
        except OSError as exc:
            return False, f"not writable ({exc.strerror or exc})"
    if path.exists():
        return False, "not a folder"
    base = existing_ancestor(path)
    if base.is_dir() and os.access(base, os.W_OK | os.X_OK):
        return True, f"to be created under {base}"
    return False, f"cannot be created under {base}"


def bytes_to_download(models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY) -> int:
    """Bytes of the registry files not there at their pinned size (no hashing: the models check does that)."""
    total = 0
    for entry in registry:
        target = entry.target(models_dir)
        size = target.stat().st_size if target.is_file() else None
        if entry.size is not None and size != entry.size:
            total += entry.size
    return total


def storage_check(settings: Settings, cache_root: Path, settings_file: Path,
                  registry: Sequence[RegistryEntry] = REGISTRY) -> Check:
    """The model, cache, log and settings folders writable; free space for the downloads and the exports."""
    needed = bytes_to_download(settings.models_dir, registry)
    folders = {"models": settings.models_dir, "cache": cache_root, "logs": settings.log_dir,
               "settings": settings_file.parent}
    found = {label: writable(path) for label, path in folders.items()}
    free = shutil.disk_usage(existing_ancestor(settings.models_dir)).free
    detail = "; ".join(f"{label} {folders[label]} {how}" for label, (_, how) in found.items())
    detail += f"; {format_bytes(free)} free for the models"
    detail += f", {format_bytes(needed)} to download" if needed else ""
    if needed and not found["models"][0]:
        return Check(STORAGE, FAIL, detail, f"make {settings.models_dir} writable for this user, or choose another "
                                            "folder: --models-dir DIR (or MIRAGE_MODELS_DIR, or the models_dir "
                                            "setting)")
    if free < needed:
        return Check(STORAGE, FAIL, detail, f"free {format_bytes(needed - free)} on the disk of {settings.models_dir}, "
                                            "or put the models on another disk: --models-dir DIR")
    problems = [label for label, (ok, _) in found.items() if not ok]
    if problems:
        how = {"models": "--models-dir DIR or MIRAGE_MODELS_DIR", "cache": "MIRAGE_CACHE_DIR",
               "logs": "MIRAGE_LOG_DIR", "settings": "--settings FILE or MIRAGE_SETTINGS"}
        fixes = [f"make {folders[label]} writable or point {how[label]} elsewhere" for label in problems]
        return Check(STORAGE, WARN, detail, "; ".join(fixes))
    if free < needed + EXPORT_HEADROOM:
        return Check(STORAGE, WARN, f"{detail}: less than {format_bytes(EXPORT_HEADROOM)} would remain for the "
                                    "networks the ONNX backend exports",
                     f"free some space on the disk of {settings.models_dir}, or use --backend torch")
    return Check(STORAGE, OK, detail)
