#!/usr/bin/env bash
# Builds the Linux bundle (unless --no-build) and checks it: resources in, weights out, the stages run from the frozen
# app, the window opens under Xvfb from the bundle folder on the demo source and quits cleanly on Ctrl+Q.
# Usage: bash packaging/check_bundle.sh [--no-build]     (screenshot: build/bundle-screenshot.png)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
missing=$(for t in Xvfb xdotool xprop import; do command -v "$t" >/dev/null || echo "$t"; done)
if [ -n "$missing" ]; then
  echo "check_bundle: missing $(echo $missing); apt-get install xvfb xdotool x11-utils imagemagick" >&2
  exit 1
fi
if [ "${1:-}" != "--no-build" ]; then
  bash packaging/build_linux.sh
fi
MIRAGE_TEST_BUNDLE=1 MIRAGE_BUNDLE_DIR=dist/mirage python -m pytest -p no:cacheprovider -q tests/test_packaging.py
