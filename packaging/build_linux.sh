#!/usr/bin/env bash
# Builds the Linux one-folder bundle dist/mirage/ with the torch build of the active environment (CPU here).
# Usage (from anywhere): bash packaging/build_linux.sh [--tar]  -> dist/mirage/mirage, build log in build/pyinstaller.log
#   --tar  also packs dist/mirage-linux-x86_64.tar.gz for distribution.
# Uses .venv (scripts/setup.sh installs it from requirements.lock, PyInstaller included) if no virtualenv is active,
# and prints the bundle size.
# The bundle holds no model weights: the app downloads them (mirage-models download all, or the window's button).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "build_linux: no .venv here; run 'bash scripts/setup.sh' first" >&2
    exit 1
  fi
  . .venv/bin/activate
fi
python -c "import PyInstaller" 2>/dev/null || { echo "build_linux: no PyInstaller; run 'bash scripts/setup.sh' (it installs requirements.lock)" >&2; exit 1; }
python -c "import mirage_desktop" || { echo "build_linux: mirage_desktop is not importable; run 'pip install -e .'" >&2; exit 1; }

mkdir -p build
echo "Building dist/mirage (torch $(python -c 'import torch; print(torch.__version__)')); log: build/pyinstaller.log"
python -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/mirage.spec 2>&1 | tee build/pyinstaller.log | grep -E "ERROR|Error" || true
[ -x dist/mirage/mirage ] || { echo "build_linux: the build failed, see build/pyinstaller.log" >&2; exit 1; }

weights=$(find dist/mirage -type f \( -name '*.pth' -o -name '*.onnx' -o -name '*.safetensors' \) | head -5)
if [ -n "$weights" ]; then
  echo "build_linux: model weights found in the bundle, which must never ship them: $weights" >&2
  exit 1
fi
echo "Bundle: dist/mirage ($(du -sh dist/mirage | cut -f1), $(find dist/mirage -type f | wc -l) files)"
if [ "${1:-}" = "--tar" ]; then
  tar -C dist -czf "dist/mirage-linux-$(uname -m).tar.gz" mirage
  echo "Archive: dist/mirage-linux-$(uname -m).tar.gz ($(du -h "dist/mirage-linux-$(uname -m).tar.gz" | cut -f1))"
fi
echo "Run: dist/mirage/mirage   Install a menu entry: bash packaging/linux/install_desktop_entry.sh"
