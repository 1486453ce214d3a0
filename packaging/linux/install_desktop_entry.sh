#!/usr/bin/env bash
# Adds Mirage to the desktop menu of the current user: the icons into ~/.local/share/icons/hicolor and
# mirage.desktop into ~/.local/share/applications. Works for the bundle and for a pip install.
# Usage: bash packaging/linux/install_desktop_entry.sh [PATH/TO/mirage]
#   default: dist/mirage/mirage when it was built, else the `mirage` on the PATH (pip install).
# Undo: bash packaging/linux/install_desktop_entry.sh --uninstall
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$data/applications/mirage.desktop"
  find "$data/icons/hicolor" -path '*/apps/mirage.png' -delete 2>/dev/null || true
  if [ -f "$data/icons/hicolor/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
  fi
  echo "Removed the Mirage menu entry and icons"
  exit 0
fi

exe="${1:-}"
if [ -z "$exe" ]; then
  if [ -x "$here/../../dist/mirage/mirage" ]; then
    exe="$here/../../dist/mirage/mirage"
  elif command -v mirage >/dev/null 2>&1; then
    exe="$(command -v mirage)"
  else
    echo "install_desktop_entry: no mirage executable found; build the bundle (bash packaging/build_linux.sh)," \
         "pip install the app, or pass the path: $0 /opt/mirage/mirage" >&2
    exit 1
  fi
fi
[ -x "$exe" ] || { echo "install_desktop_entry: '$exe' is not an executable file" >&2; exit 1; }
exe="$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")"

for dir in "$here"/icons/hicolor/*/apps; do
  size="$(basename "$(dirname "$dir")")"
  install -D -m 644 "$dir/mirage.png" "$data/icons/hicolor/$size/apps/mirage.png"
done
mkdir -p "$data/applications"
sed -e "s|^Exec=.*|Exec=\"$exe\"|" -e "s|^TryExec=.*|TryExec=$exe|" "$here/mirage.desktop" \
  > "$data/applications/mirage.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
echo "Mirage is in the desktop menu (launches $exe)"
