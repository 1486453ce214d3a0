from pathlib import Path

import numpy as np
import pytest

from mirage_desktop.engine.sources import DemoSource, ImageSource, SourceError, make_source, WebcamSource


def test_demo_source_moves_smoothly_and_is_deterministic() -> None:
    demo = DemoSource(320, 180, 30, paced=False)
    demo.open()
    a, b = demo.read(), demo.read()
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int)).mean()
    assert 0 < diff < 20  # it moves, a little per frame
    again = DemoSource(320, 180, 30, paced=False)
    again.open()
    assert np.array_equal(again.read(), a)


def test_make_source_kinds(tmp_path: Path) -> None:
    assert isinstance(make_source("demo"), DemoSource)
    assert isinstance(make_source("0"), WebcamSource)
    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(make_source(str(img)), ImageSource)
    with pytest.raises(SourceError, match="neither"):
        make_source(str(tmp_path / "missing.mp4"))


def test_missing_camera_says_what_to_do() -> None:
    with pytest.raises(SourceError, match="cannot be opened"):
        WebcamSource(63).open()
