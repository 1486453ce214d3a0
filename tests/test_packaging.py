"""The PyInstaller bundle works on its own: built, started from its folder (cwd outside the source tree), window shown
under Xvfb on the demo source, engine stages running on torch/onnxruntime inside the bundle, clean exit on Ctrl+Q
and on SIGTERM.

A bundle build takes minutes, so these tests run only with ``MIRAGE_TEST_BUNDLE=1``:

    MIRAGE_TEST_BUNDLE=1 pytest tests/test_packaging.py        # builds dist/mirage first (packaging/build_linux.sh)
    MIRAGE_TEST_BUNDLE=1 MIRAGE_BUNDLE_DIR=dist/mirage pytest tests/test_packaging.py   # checks an existing bundle

Needs ``Xvfb``, ``xdotool``, ``xprop`` and ImageMagick ``import`` (apt-get install xvfb xdotool x11-utils imagemagick).
The window screenshot is kept as ``build/bundle-screenshot.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(os.environ.get("MIRAGE_TEST_BUNDLE") != "1",
                       reason="bundle build takes minutes; set MIRAGE_TEST_BUNDLE=1 to run it"),
    pytest.mark.slow,
    pytest.mark.timeout(2400),
]

WEIGHT_SUFFIXES = (".pth", ".pt", ".onnx", ".safetensors", ".ckpt")


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle folder: ``MIRAGE_BUNDLE_DIR`` if given, else a fresh build into ``dist/mirage``."""
    given = os.environ.get("MIRAGE_BUNDLE_DIR")
    if given:
        folder = Path(given).resolve()
    else:
        build = subprocess.run(["bash", str(REPO / "packaging" / "build_linux.sh")], cwd=REPO, check=False,
                               capture_output=True, text=True, timeout=3000)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        folder = REPO / "dist" / "mirage"
    assert (folder / "mirage").is_file(), f"{folder}/mirage is missing: build the bundle (packaging/build_linux.sh)"
    return folder


def _clean_env(tmp: Path) -> dict[str, str]:
    """An environment that cannot reach the source tree or the real user's files."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MIRAGE_", "PYTHON", "VIRTUAL_ENV", "QT_", "XDG_"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["HOME"] = str(tmp / "home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_RUNTIME_DIR", "runtime")):
        env[var] = str(tmp / "home" / sub)
        Path(env[var]).mkdir(parents=True, exist_ok=True, mode=0o700)
    return env


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    assert REPO not in run.resolve().parents
    return run


def test_bundle_holds_the_resources_and_no_weights(bundle: Path) -> None:
    internal = bundle / "_internal"
    for rel in ("mirage_desktop/resources/icon.png", "mirage_desktop/resources/astronaut.png",
                "mirage_desktop/api/static/index.html"):
        assert (internal / rel).is_file(), f"{rel} is not in the bundle"
    files = [p for p in bundle.rglob("*") if p.is_file()]
    weights = [str(p) for p in files if p.suffix.lower() in WEIGHT_SUFFIXES]
    assert weights == [], "model weights must never ship in the bundle"
    names = {p.name for p in files}
    for unwanted in ("libQt6WebEngineCore.so.6", "libQt6Quick.so.6", "libQt6Qml.so.6", "libQt63DCore.so.6"):
        assert unwanted not in names, f"{unwanted} is bundled but never used"
    assert not (internal / "pytest").exists() and not (internal / "tkinter").exists()


def test_bundle_model_manager_runs(bundle: Path, tmp_path: Path) -> None:
    """``mirage-models`` ships next to ``mirage``, so bundle users can fetch the weights without the window."""
    env = _clean_env(tmp_path)
    env["MIRAGE_MODELS_DIR"] = str(tmp_path / "models")
    r = subprocess.run([str(bundle / "mirage-models"), "status"], cwd=_run_dir(tmp_path), env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1, r.stdout + r.stderr  # status exits 1 while files are missing
    assert "Traceback" not in r.stderr, r.stderr
    assert str(tmp_path / "models") in r.stdout and "missing" in r.stdout, r.stdout


def test_headless_runs_the_stages_inside_the_bundle(bundle: Path, tmp_path: Path,
                                                    synthetic_models_dir: Path) -> None:
    """SCRFD (onnxruntime) and LivePortrait (torch) load and run from the frozen app, not from this checkout."""
    run = _run_dir(tmp_path)
    env = _clean_env(tmp_path)
    r = subprocess.run([str(bundle / "mirage"), "--version"], cwd=run, env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.startswith("mirage "), r.stdout + r.stderr
    stats_path = run / "stats.json"
    r = subprocess.run(
        [str(bundle / "mirage"), "--headless", "--source", "demo", "--frames", "3", "--width", "640", "--height",
         "360", "--enable", "scrfd,liveportrait", "--models-dir", str(synthetic_models_dir), "--device", "cpu",
         "--backend", "torch", "--quiet", "--stats-json", str(stats_path)],
        cwd=run, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    stats = json.loads(stats_path.read_text())
    assert stats["frames_out"] >= 3
    for name in ("scrfd", "liveportrait"):
        stage = stats["stages"][name]
        assert stage["enabled"], f"{name} is off in the bundle: {stage.get('reason')}"


@pytest.fixture()
def xvfb(tmp_path: Path) -> Iterator[str]:
    """A private X display; yields its name (":N")."""
    for tool in ("Xvfb", "xdotool", "xprop", "import"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt-get install xvfb xdotool x11-utils imagemagick")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    assert number.isdigit(), "Xvfb did not report its display number"
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _x(display: str, *args: str, timeout: float = 60) -> str:
    r = subprocess.run(list(args), env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                       timeout=timeout, check=False)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def _shot(display: str, window: str, path: Path) -> np.ndarray:
    _x(display, "import", "-window", window, str(path))
    image = cv2.imread(str(path))
    assert image is not None, f"could not read the screenshot {path}"
    return image


@pytest.mark.parametrize("quit_by", ["ctrl+q", "sigterm"])  # the user's shortcut; a session logout or `kill`
def test_window_opens_from_the_bundle_and_quits_cleanly(bundle: Path, tmp_path: Path, xvfb: str, quit_by: str) -> None:
    run = _run_dir(tmp_path)
    env = _clean_env(tmp_path)
    env.update(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb")
    log = (run / "mirage.log").open("w")
    app = subprocess.Popen([str(bundle / "mirage"), "--source", "demo"], cwd=run, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        window = _x(xvfb, "xdotool", "search", "--sync", "--onlyvisible", "--name", "Mirage",
                    timeout=180).split()[0]
        # The task bar entry: WM_CLASS matches StartupWMClass in mirage.desktop, and the window carries an icon.
        props = _x(xvfb, "xprop", "-id", window, "WM_CLASS", "_NET_WM_ICON", "_NET_WM_NAME")
        assert '"Mirage"' in props.split("WM_CLASS")[1].splitlines()[0], props[:300]
        assert "_NET_WM_ICON(CARDINAL)" in props, "the window has no icon"
        assert "Mirage" in props.split("_NET_WM_NAME")[1].splitlines()[0]

        # The demo source plays in the preview: wait until two screenshots differ (the portrait moves).
        first = _shot(xvfb, window, run / "first.png")
        moving, deadline = False, time.monotonic() + 120
        while not moving and time.monotonic() < deadline:
            time.sleep(1.0)
            later = _shot(xvfb, window, run / "later.png")
            moving = later.shape == first.shape and float(np.abs(later.astype(np.int16) - first).mean()) > 0.5
        assert moving, "the window shows no moving demo video"
        assert float(later.std()) > 20, "the screenshot is nearly uniform"
        shutil.copy(run / "later.png", _keep_dir() / "bundle-screenshot.png")

        if quit_by == "ctrl+q":
            _x(xvfb, "xdotool", "windowfocus", "--sync", window)
            _x(xvfb, "xdotool", "key", "--clearmodifiers", "ctrl+q")
        else:
            app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        log.close()
    output = (run / "mirage.log").read_text(errors="replace")
    assert code == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    # A clean shutdown saves the window state into the settings file.
    settings = Path(env["XDG_CONFIG_HOME"]) / "mirage" / "settings.json"
    assert settings.is_file(), f"no settings saved at {settings}; did shutdown() run?"


def _keep_dir() -> Path:
    keep = REPO / "build"
    keep.mkdir(exist_ok=True)
    return keep
