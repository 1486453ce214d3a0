#!/usr/bin/env bash
# Creates .venv and installs Mirage into it. Usage: scripts/setup.sh [extras], e.g. scripts/setup.sh test
# Installs the system libraries Qt needs and jemalloc (the app restarts itself on it: engine/host_memory.py) where
# apt-get exists, and the pinned torch build first (a bare `torch`
# resolves to a multi-GB build on some machines).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  pkgs="libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
        libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3
        xvfb xauth libjemalloc2"
  if [ "$extras" = "test" ]; then pkgs="$pkgs chromium chromium-driver"; fi
  missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "Installing system packages: $(echo $missing)"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[$extras]"
else
  python -m pip install -q -e .
fi
