"""What is in a model directory: each registry file present, missing, partly downloaded or corrupt.

No network here: this is what ``mirage-models status``, the stages and the window's download dialog look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mirage_desktop.models.integrity import HashCache, sha256_file
from mirage_desktop.models.registry import REGISTRY, RegistryEntry, entries_for

#: Folder (inside the model directory) for partial downloads; same filesystem, so the final rename is atomic.
STAGING_DIR = ".downloads"

PRESENT, MISSING, CORRUPT, PARTIAL = "present", "missing", "corrupt", "partial"


@dataclass(frozen=True)
class FileStatus:
    entry: RegistryEntry
    state: str  # present / missing / corrupt / partial
    path: Path
    size_on_disk: int | None = None
    partial_bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == PRESENT

    @property
    def verified(self) -> bool:
        return self.entry.verified

    @property
    def bytes_to_download(self) -> int | None:
        """Bytes still to fetch (``None`` when the registry does not know the size)."""
        if self.ok:
            return 0
        if self.entry.size is None:
            return None
        return max(self.entry.size - self.partial_bytes, 0)


def partial_path(entry: RegistryEntry, models_dir: Path) -> Path:
    target = entry.target(Path(models_dir) / STAGING_DIR)
    return target.with_name(target.name + ".part")


def _file_status(entry: RegistryEntry, models_dir: Path, cache: HashCache | None) -> FileStatus:
    path = entry.target(models_dir)
    part = partial_path(entry, models_dir)
    partial_bytes = part.stat().st_size if part.is_file() else 0
    if not path.is_file():
        if path.exists():
            return FileStatus(entry, CORRUPT, path, None, partial_bytes, "not a regular file")
        if partial_bytes:
            return FileStatus(entry, PARTIAL, path, None, partial_bytes, f"{partial_bytes} bytes downloaded")
        return FileStatus(entry, MISSING, path)
    st = path.stat()
    if entry.size is not None and st.st_size != entry.size:
        return FileStatus(entry, CORRUPT, path, st.st_size, partial_bytes, f"size {st.st_size} != {entry.size}")
    if entry.sha256 is None:
        return FileStatus(entry, PRESENT, path, st.st_size, 0, "unverified: no pinned sha256")
    digest = cache.get(entry.local_path, st) if cache is not None else None
    if digest is None:
        digest = sha256_file(path)
        if cache is not None:
            cache.put(entry.local_path, st, digest)
    if digest != entry.sha256:
        return FileStatus(entry, CORRUPT, path, st.st_size, partial_bytes, f"sha256 {digest[:12]}… != pinned")
    return FileStatus(entry, PRESENT, path, st.st_size)


def status(models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY, *, rehash: bool = False,
           save_cache: bool = True) -> list[FileStatus]:
    """State of every registry file. Digests are cached by (size, mtime); ``rehash=True`` ignores the cache,
    ``save_cache=False`` reads it but writes nothing (``mirage doctor`` only looks)."""
    models_dir = Path(models_dir)
    cache = HashCache(models_dir)
    if rehash:
        cache.data = {}
    out = [_file_status(e, models_dir, cache) for e in registry]
    if save_cache:
        cache.save()
    return out


def verify(models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY) -> list[FileStatus]:
    """Re-hash every file that is there (the cache is rebuilt)."""
    return status(models_dir, registry, rehash=True)


def missing_for(feature: str, models_dir: Path, registry: Sequence[RegistryEntry] = REGISTRY) -> list[RegistryEntry]:
    """Files a feature still needs (missing, partial or corrupt). Empty list = the stage can be enabled."""
    wanted = entries_for(feature, registry)
    return [s.entry for s in status(models_dir, wanted) if not s.ok]


def total_to_download(statuses: Sequence[FileStatus]) -> tuple[int, int]:
    """(known bytes still to fetch, number of files of unknown size still to fetch)."""
    known, unknown = 0, 0
    for s in statuses:
        n = s.bytes_to_download
        if n is None:
            unknown += 1
        else:
            known += n
    return known, unknown


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
