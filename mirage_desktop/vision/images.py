"""Reading an image file, with an error that names the file and what to do (portraits, stills, the CLI)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageReadError(ValueError):
    """The file is missing or is not an image; the message names the file and the fix."""


def read_image(path: Path | str) -> np.ndarray:
    """BGR uint8 from a PNG, JPEG, BMP, WebP or TIFF file (paths with any characters, on every OS)."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise ImageReadError(f"Image not found: {path}. Check the path.")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(f"Cannot read {path} as an image (corrupt or not an image). Use a PNG or JPEG file.")
    return image
