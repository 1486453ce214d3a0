#!/usr/bin/env bash
# Builds dist/Mirage.app (and the one-folder dist/mirage/) on macOS. Not run on the Linux development machine:
# it is the documented recipe, kept in step with build_linux.sh.
#
# Requirements: macOS 12+, Python 3.11 from python.org or Homebrew, Xcode command line tools (xcode-select --install).
# Usage: bash packaging/build_macos.sh            (from anywhere; creates .venv if missing)
#
# Notes:
# - torch on macOS is the CPU/MPS build from PyPI; onnxruntime is the CPU build (pyproject picks it on darwin).
# - The icon: iconutil turns the PNG set into packaging/macos/mirage.icns, which mirage.spec uses when present.
# - mirage.spec writes NSCameraUsageDescription into Info.plist; without it macOS kills the app when it opens the
#   webcam. The first launch asks for camera permission.
# - Gatekeeper: an unsigned app must be opened with right-click > Open once. To sign and notarize, set
#   CODESIGN_IDENTITY ("Developer ID Application: ...") and NOTARY_PROFILE (xcrun notarytool store-credentials).
# - The virtual camera is OBS Studio's (install OBS, start its Virtual Camera once); pyvirtualcam writes to it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -s)" = "Darwin" ] || { echo "build_macos: run this on macOS (use build_linux.sh on Linux)" >&2; exit 1; }

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
python -m pip install -q "pip==26.3"
python -m pip install -q "torch==2.13.0"
python -m pip install -q --no-deps --require-hashes -r requirements.lock   # PyInstaller included
python -m pip install -q --no-deps --no-build-isolation -e .
python -m pip check

# .icns from the hicolor PNGs (drawn from resources/icon.svg by packaging/make_icons.py).
iconset=build/mirage.iconset
rm -rf "$iconset" && mkdir -p "$iconset" packaging/macos
for n in 16 32 128 256 512; do
  cp "packaging/linux/icons/hicolor/${n}x${n}/apps/mirage.png" "$iconset/icon_${n}x${n}.png"
done
for n in 16 128 256; do
  cp "packaging/linux/icons/hicolor/$((n * 2))x$((n * 2))/apps/mirage.png" "$iconset/icon_${n}x${n}@2x.png"
done
cp packaging/linux/icons/hicolor/32x32/apps/mirage.png "$iconset/icon_16x16@2x.png"
cp packaging/linux/icons/hicolor/64x64/apps/mirage.png "$iconset/icon_32x32@2x.png"
iconutil -c icns "$iconset" -o packaging/macos/mirage.icns

python -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/mirage.spec

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" dist/Mirage.app
  if [ -n "${NOTARY_PROFILE:-}" ]; then
    ditto -c -k --keepParent dist/Mirage.app build/Mirage.zip
    xcrun notarytool submit build/Mirage.zip --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple dist/Mirage.app
  fi
fi

if find dist/Mirage.app -name '*.pth' -o -name '*.onnx' | grep -q .; then
  echo "build_macos: model weights found in the bundle, which must never ship them" >&2
  exit 1
fi
echo "Bundle: dist/Mirage.app ($(du -sh dist/Mirage.app | cut -f1)). Make a disk image:"
echo "  hdiutil create -volname Mirage -srcfolder dist/Mirage.app -ov -format UDZO dist/Mirage.dmg"
