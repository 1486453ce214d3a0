"""Is a model file the pinned one: sha256 of the bytes, and a cache so a 500 MB file is not re-hashed every time.

Sizes are compared against the registry where the file is looked at (status, transfer); the digest is the proof.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from mirage_desktop.models.errors import DownloadCancelled

logger = logging.getLogger(__name__)

#: Digests already computed, keyed by path, size and mtime, so that ``status`` does not re-hash 500 MB each call.
HASH_CACHE_FILE = ".mirage-models-hashes.json"

_READ_CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"Cancelled while checking {path}")
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """``{local_path: [size, mtime_ns, sha256]}`` stored in the model directory; unreadable or stale = ignored."""

    def __init__(self, models_dir: Path) -> None:
        self.path = Path(models_dir) / HASH_CACHE_FILE
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data: dict[str, list] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, key: str, st: os.stat_result) -> str | None:
        row = self.data.get(key)
        if isinstance(row, list) and len(row) == 3 and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return str(row[2])
        return None

    def put(self, key: str, st: os.stat_result, digest: str) -> None:
        self.data[key] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only model dir still works, it just re-hashes next time
            logger.debug("Could not save the hash cache %s: %s", self.path, exc)
