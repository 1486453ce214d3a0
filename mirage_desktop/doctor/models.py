"""The model files: each registry file present, its size and sha256 against the registry's pins (the hash cache is
read, never written), and the cache of networks exported for ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mirage_desktop.config import default_models_dir
from mirage_desktop.doctor.check import FAIL, OK, Check
from mirage_desktop.models.registry import FEATURES, REGISTRY, RegistryEntry, download_hint
from mirage_desktop.models.status import MISSING, FileStatus, format_bytes, status, total_to_download

NAME = "models"
#: under the cache root: LivePortrait's exported networks, the ``auto`` measurements, TensorRT's engines
EXPORT_DIR = "liveportrait-onnx"
TENSORRT_DIR = "tensorrt"


def _size(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def export_cache_text(root: Path) -> str:
    """``4 exported networks (1.2 GB) and TensorRT engines (80 MB) in DIR``, or that there are none yet."""
    exports = root / EXPORT_DIR
    entries = [e for e in exports.iterdir() if (e / "model.onnx").is_file()] if exports.is_dir() else []
    trt = root / TENSORRT_DIR
    parts = []
    if entries:
        parts.append(f"{len(entries)} exported network(s) ({format_bytes(_size(exports))})")
    if trt.is_dir() and any(trt.iterdir()):
        parts.append(f"TensorRT engines ({format_bytes(_size(trt))})")
    if not parts:
        return f"no exported networks in {root} yet (made once, on first use of the ONNX backend)"
    return f"{' and '.join(parts)} in {root}"


def states_text(bad: Sequence[FileStatus], total: int) -> str:
    """``missing: a, b; corrupt: c (size 1 != 2)``, or ``all 8 registry files missing``."""
    if len(bad) == total and all(s.state == MISSING for s in bad):
        return f"all {total} registry files missing"
    by_state: dict[str, list[str]] = {}
    for s in bad:
        by_state.setdefault(s.state, []).append(s.entry.local_path + (f" ({s.detail})" if s.detail else ""))
    return "; ".join(f"{state}: {', '.join(paths)}" for state, paths in by_state.items())


def _group(entries: Sequence[RegistryEntry]) -> str:
    features = {e.feature for e in entries}
    return features.pop() if len(features) == 1 else "all"


def models_check(models_dir: Path, cache_root: Path, registry: Sequence[RegistryEntry] = REGISTRY,
                 scrfd_model: Path | None = None) -> Check:
    """Every file the stages need, checked like ``mirage-models status`` (sizes, digests) without writing."""
    wanted = [e for e in registry if not (scrfd_model is not None and e.feature == "scrfd")]
    statuses: list[FileStatus] = status(models_dir, wanted, save_cache=False)
    bad = [s for s in statuses if not s.ok]
    custom = []
    if scrfd_model is not None:
        custom.append(f"SCRFD from the setting scrfd_model: {scrfd_model}"
                      + ("" if scrfd_model.is_file() else " (missing)"))
    cache = export_cache_text(cache_root)
    if bad or (scrfd_model is not None and not scrfd_model.is_file()):
        known, unknown = total_to_download(statuses)
        states = states_text(bad, len(statuses))
        more = f" + {unknown} of unknown size" if unknown else ""
        fixes = []
        if bad:
            flag = "" if Path(models_dir) == default_models_dir() else f" (with --models-dir {models_dir})"
            fixes.append(download_hint(_group([s.entry for s in bad])) + flag)
        if scrfd_model is not None and not scrfd_model.is_file():
            fixes.append(f"put the SCRFD model at {scrfd_model}, or remove the scrfd_model setting")
        return Check(NAME, FAIL, "; ".join([f"In {models_dir}: {states or 'all registry files good'} "
                                            f"({format_bytes(known)}{more} to download)", *custom, cache]),
                     "; ".join(fixes))
    total = sum(s.size_on_disk or 0 for s in statuses)
    unverified = [s.entry.local_path for s in statuses if not s.verified]
    pins = ("sizes and sha256 match the registry's pins" if not unverified
            else f"pinned ones match; unverified (no pin): {', '.join(unverified)}")
    groups = ", ".join(sorted({s.entry.feature for s in statuses}, key=FEATURES.index))
    return Check(NAME, OK, "; ".join([f"{len(statuses)} files ({groups}, {format_bytes(total)}) in {models_dir}: "
                                      f"{pins}", *custom, cache]))
