"""All configuration in one place: defaults, then the settings file, then environment variables.

Every part of the app (engine, UI, HTTP server, model utility) reads its options from :class:`Settings`;
nothing else reads ``os.environ`` or invents a path of its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from mirage_desktop.animation_options import AnimationOptionError, AnimationOptions, option_entry
from mirage_desktop.os_support import fsync_directory

logger = logging.getLogger(__name__)

APP_NAME = "mirage"
APP_AUTHOR = "Mirage"

#: Subfolders of the model directory. The LivePortrait part is the official download tree.
LIVEPORTRAIT_SUBDIR = "liveportrait"
SCRFD_SUBDIR = "scrfd"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value the app cannot use; the message says which and how to fix it."""


def default_models_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR)) / "models"


def default_log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))


def default_settings_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR)) / "settings.json"


def default_avatar_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR)) / "avatars"


def bundled_resource(name: str) -> Path:
    """Path of a file shipped in ``resources/`` (next to the package, or inside a PyInstaller bundle)."""
    here = Path(__file__).resolve().parent
    for base in (here / "resources", here.parent / "resources"):
        candidate = base / name
        if candidate.exists():
            return candidate
    return here.parent / "resources" / name


def bundled_avatar() -> Path:
    return bundled_resource("astronaut.png")


def animation_options(raw: Any, origin: str = "the settings") -> AnimationOptions:
    """The Animation options of a settings file: the defaults overlaid by the valid entries of ``raw``, old names
    (``motion``, ``region``, ...) read as the options they mean, so the next save writes the new ones. A bad or
    unknown entry is logged, naming it and the allowed values, and the default stays, so one typo does not reset
    the others."""
    if raw is None:
        return AnimationOptions()
    if not isinstance(raw, dict):
        logger.warning("Ignoring animation in %s: expected an object like %s, got %r", origin,
                       json.dumps(AnimationOptions().to_json()), raw)
        return AnimationOptions()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            name, checked = option_entry(key, value)
        except AnimationOptionError as exc:
            logger.warning("%s (in %s); the default stays", exc, origin)
            continue
        values[name] = checked
    return AnimationOptions(**values)


@dataclass
class Settings:
    """Typed settings. Field names are the keys of the settings file."""

    enable_scrfd: bool = False
    enable_liveportrait: bool = False
    models_dir: Path = field(default_factory=default_models_dir)
    scrfd_model: Path | None = None
    device: str = "auto"
    liveportrait_backend: str = "auto"  # torch, onnxruntime, or auto (each network on its fastest, measured once)
    liveportrait_precision: str = "auto"  # fp32, bf16 (CPUs with native bf16), fp16 (GPUs), or auto
    source: str = "demo"
    avatar: Path | None = None
    avatar_dir: Path = field(default_factory=default_avatar_dir)
    output_width: int = 1280
    output_height: int = 720
    fps: float = 30.0
    show_detections: bool = False
    keep_avatar_aspect: bool = False
    fallback: str = "avatar"  # what a lost face shows after the grace period: "avatar" or "passthrough"
    virtual_camera: bool = False
    virtual_microphone: bool = False  # the Mirage Microphone: the real one delayed to match the video
    microphone: str = "default"  # the real microphone, as the sound server or PortAudio names it
    audio_offset_ms: float = 0.0  # added to the video's delay for the voice (positive: later)
    http_host: str = "127.0.0.1"
    http_port: int = 8765
    http_enabled: bool = False
    token: str = ""
    max_peers: int = 4
    remote_url: str = ""  # the remote engine the window uses when "Remote..." is chosen (empty: this computer)
    remote_token: str = ""  # that engine's token
    log_dir: Path = field(default_factory=default_log_dir)
    animation: AnimationOptions = field(default_factory=AnimationOptions)  # the settings file's "animation" object
    ui: dict[str, Any] = field(default_factory=dict)  # window geometry and other view-only state

    def liveportrait_dir(self) -> Path:
        return self.models_dir / LIVEPORTRAIT_SUBDIR

    def scrfd_dir(self) -> Path:
        return self.models_dir / SCRFD_SUBDIR

    def resolved_device(self) -> str:
        """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``."""
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # torch missing or broken: the CPU paths still work
            return "cpu"

    def ensure_token(self) -> str:
        if not self.token:
            self.token = secrets.token_urlsafe(24)
        return self.token

    def override(self, name: str, value: Any) -> None:
        """Set a value for this run only (a command-line flag): saving keeps the stored value unless the user
        changes the setting again during the run."""
        overrides: dict[str, tuple[Any, Any]] = self.__dict__.setdefault("_overrides", {})
        original = overrides[name][0] if name in overrides else getattr(self, name)
        overrides[name] = (original, value)
        setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        overrides: dict[str, tuple[Any, Any]] = self.__dict__.get("_overrides", {})
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in overrides and value == overrides[f.name][1]:
                value = overrides[f.name][0]
            if isinstance(value, AnimationOptions):
                value = value.to_json()
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


_PATH_FIELDS = {"models_dir", "scrfd_model", "avatar", "avatar_dir", "log_dir"}

#: the LivePortrait backends and precisions a setting or flag may name (liveportrait/backends/base.py's, plus auto;
#: a test keeps the two spellings equal, since config may import nothing above it)
LIVEPORTRAIT_BACKENDS = ("auto", "torch", "onnxruntime")
LIVEPORTRAIT_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_CHOICES: dict[str, tuple[str, ...]] = {
    "liveportrait_backend": LIVEPORTRAIT_BACKENDS,
    "liveportrait_precision": LIVEPORTRAIT_PRECISIONS,
}

#: Environment variables and the field each sets.
ENV_VARS: dict[str, str] = {
    "MIRAGE_ENABLE_SCRFD": "enable_scrfd",
    "MIRAGE_ENABLE_LIVEPORTRAIT": "enable_liveportrait",
    "MIRAGE_MODELS_DIR": "models_dir",
    "MIRAGE_SCRFD_MODEL": "scrfd_model",
    "MIRAGE_DEVICE": "device",
    "MIRAGE_LIVEPORTRAIT_BACKEND": "liveportrait_backend",
    "MIRAGE_LIVEPORTRAIT_PRECISION": "liveportrait_precision",
    "MIRAGE_SOURCE": "source",
    "MIRAGE_AVATAR": "avatar",
    "MIRAGE_TOKEN": "token",
    "MIRAGE_HTTP_HOST": "http_host",
    "MIRAGE_HTTP_PORT": "http_port",
    "MIRAGE_LOG_DIR": "log_dir",
    "MIRAGE_REMOTE_URL": "remote_url",
    "MIRAGE_REMOTE_TOKEN": "remote_token",
}


def _coerce(name: str, raw: Any, origin: str) -> Any:
    """Turn a raw file/env value into the field's type, or fail naming the setting."""
    fld = {f.name: f for f in dataclasses.fields(Settings)}[name]
    kind = str(fld.type)
    try:
        if name in _PATH_FIELDS:
            return None if raw in (None, "") else Path(str(raw)).expanduser()
        if name == "animation":
            return animation_options(raw, origin)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected one of 1/0/true/false/on/off, got {raw!r}")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "str":
            if name in _CHOICES and str(raw) not in _CHOICES[name]:
                raise ValueError(f"expected one of {', '.join(_CHOICES[name])}, got {raw!r}")
            return str(raw)
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid value for {name} (from {origin}): {exc}. Fix or remove it.") from exc


def checked_setting(name: str, value: Any, origin: str) -> Any:
    """``value`` as setting ``name`` takes it (the same check as for the file and the environment), or ConfigError
    naming the setting, the choices and ``origin``."""
    return _coerce(name, value, origin)


def load_settings(
    path: Path | None = None, env: Mapping[str, str] | None = None, *, use_file: bool = True, backup: bool = True
) -> Settings:
    """Defaults, overlaid by the settings file (if any), overlaid by ``MIRAGE_*`` environment variables.

    ``backup=False`` leaves a file with rejected entries where it is (``mirage doctor`` only looks)."""
    env = os.environ if env is None else env
    settings = Settings()
    path = path or Path(env.get("MIRAGE_SETTINGS", "") or default_settings_file())
    known = {f.name for f in dataclasses.fields(Settings)}
    problems: list[str] = []
    unreadable = False
    if use_file and path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except OSError as exc:  # not corrupt, only unreadable now: leave it alone
            problems.append(f"Cannot read the settings file {path} ({exc.strerror or exc}); defaults are used. "
                            "Check its permissions.")
            unreadable = True
            data = {}
        except ValueError as exc:
            problems.append(f"The settings file {path} is corrupt ({exc}); defaults are used.")
            data = {}
        for key, raw in data.items():
            if key in known:
                try:
                    setattr(settings, key, _coerce(key, raw, str(path)))
                except ConfigError as exc:
                    problems.append(str(exc))
        if problems and not unreadable and backup:  # some was rejected: keep the user's file before a save replaces it
            kept = keep_backup(path)
            if kept is not None:
                problems.append(f"The old file is kept as {kept}; fix it and move it back, or delete it.")
    for message in problems:
        logger.warning("%s", message)
    settings.__dict__["load_problems"] = problems  # not a field: shown by the window, never saved
    for var, key in ENV_VARS.items():
        if var in env:
            setattr(settings, key, _coerce(key, env[var], f"environment variable {var}"))
    if settings.models_dir is None:
        settings.models_dir = default_models_dir()
    return settings


def keep_backup(path: Path) -> Path | None:
    """Move a settings file that could not be used fully aside (``settings.json.corrupt-<time>``), so the next
    save cannot overwrite what the user may want to repair; None when even that fails."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, backup)
    except OSError as exc:
        logger.warning("Could not keep a backup of %s: %s", path, exc)
        return None
    return backup


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings file atomically: a temporary file in the same folder, flushed to disk, then renamed
    over the old one, so a crash or power cut leaves the old file or the new one, never half of one."""
    path = path or Path(os.environ.get("MIRAGE_SETTINGS", "") or default_settings_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings.to_json(), indent=2, sort_keys=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)  # the rename itself (POSIX; Windows needs nothing)
    return path
