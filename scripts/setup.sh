#!/usr/bin/env bash
# Creates .venv and installs Mirage into it, every package at the version requirements.lock pins (hash-checked).
# Usage: scripts/setup.sh [--latest] [test]
#   test      also the system packages the tests need (Chromium for the WebRTC page, PulseAudio for the sound server
#             tests/test_av_sync.py starts)
#   --latest  the newest versions pyproject.toml allows instead of the lock, into .venv-latest (drift found on purpose)
# Installs the system libraries Qt needs, jemalloc (the app restarts itself on it: engine/host_memory.py) and PortAudio
# with ALSA's PulseAudio plugin (the Mirage Microphone's audio) where apt-get exists.
set -euo pipefail
cd "$(dirname "$0")/.."
latest=0
extras=""
for arg in "$@"; do
  case "$arg" in
    --latest) latest=1 ;;
    test) extras=test ;;
    *) echo "usage: scripts/setup.sh [--latest] [test]" >&2; exit 2 ;;
  esac
done
venv=.venv
[ "$latest" = 0 ] || venv=.venv-latest

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  pkgs="libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
        libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3
        xvfb xauth libjemalloc2 libportaudio2 libasound2-plugins"
  if [ "$extras" = "test" ]; then pkgs="$pkgs chromium chromium-driver pulseaudio pulseaudio-utils"; fi
  missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "Installing system packages: $(echo $missing)"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q "pip==26.3"
# torch first, pinned: a bare `torch` resolves to a multi-GB CUDA build on some machines, and the lock leaves torch
# to the index that fits this machine.
python -m pip install -q "torch==2.13.0"
if [ "$latest" = 1 ]; then
  # torch stays at the pinned build (a newer torch from PyPI is a multi-GB CUDA build)
  python -m pip install -q --upgrade --upgrade-strategy eager -c <(echo "torch==2.13.0") -e ".[test,package]"
else
  # Mirage before the lock installed the full opencv-python, whose cv2 and Qt plugins would shadow the headless one.
  if python -m pip show -q opencv-python >/dev/null 2>&1; then python -m pip uninstall -q -y opencv-python; fi
  python -m pip install -q --no-deps --require-hashes -r requirements.lock
  python -m pip install -q --no-deps --no-build-isolation -e .
fi
python -m pip check
