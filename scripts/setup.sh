#!/usr/bin/env bash
# Creates .venv and installs Mirage into it, every package at the version requirements.lock pins (hash-checked).
# Usage: scripts/setup.sh [--latest] [--cuda 12|13|cpu] [test]
#   test      also the system packages the tests need (Chromium for the WebRTC page, PulseAudio for the sound server
#             tests/test_av_sync.py starts)
#   --latest  the newest versions pyproject.toml allows instead of the lock, into .venv-latest (drift found on purpose)
#   --cuda    the GPU line, instead of the one the NVIDIA driver runs (nvidia-smi): 13 (driver R580 or newer: torch
#             cu130 and the lock's onnxruntime-gpu), 12 (R525 to R579: torch cu126 and onnxruntime-gpu 1.26.0, the
#             last on CUDA 12), or cpu (no NVIDIA driver: torch 2.13.0 from the default index, then the lock)
# Installs the system libraries Qt needs and PortAudio with ALSA's PulseAudio plugin (the Mirage Microphone's
# audio) where apt-get exists.
# mirage_desktop/doctor/lines.py holds the same versions (tests/test_doctor_lines.py compares).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/setup.sh [--latest] [--cuda 12|13|cpu] [test]"
latest=0
extras=""
line=""
while [ $# -gt 0 ]; do
  case "$1" in
    --latest) latest=1 ;;
    --cuda) shift; line="${1:-}" ;;
    --cuda=*) line="${1#--cuda=}" ;;
    test) extras=test ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
case "$line" in
  ""|12|13|cpu) ;;
  *) echo "scripts/setup.sh: --cuda takes 12, 13 or cpu, not '$line'" >&2; echo "$usage" >&2; exit 2 ;;
esac
venv=.venv
[ "$latest" = 0 ] || venv=.venv-latest

# The GPU line the NVIDIA driver runs (R580 or newer: 13; R525 to R579: 12; none or older: cpu), unless --cuda says
[ -n "$line" ] || line=$(bash scripts/gpu_line.sh)
case "$line" in
  13) torch_pin="torch==2.13.0+cu130"; torch_index=(--index-url https://download.pytorch.org/whl/cu130); ort_pin="" ;;
  12) torch_pin="torch==2.13.0+cu126"; torch_index=(--index-url https://download.pytorch.org/whl/cu126)
      ort_pin="onnxruntime-gpu==1.26.0" ;;
  cpu) torch_pin="torch==2.13.0"; torch_index=(); ort_pin="" ;;
esac

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  pkgs="libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
        libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3
        xvfb xauth libportaudio2 libasound2-plugins"
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
# to the index that fits this machine (the CPU line: the default index, as CI installs it).
python -m pip install -q "$torch_pin" ${torch_index[@]+"${torch_index[@]}"}
if [ "$latest" = 1 ]; then
  # torch stays at the pinned build (a newer torch from PyPI is a multi-GB CUDA build), onnxruntime-gpu on the line's
  python -m pip install -q --upgrade --upgrade-strategy eager -c <(echo "$torch_pin"; [ -z "$ort_pin" ] || echo "$ort_pin") \
    -e ".[test,package]"
else
  # Mirage before the lock installed the full opencv-python, whose cv2 and Qt plugins would shadow the headless one.
  if python -m pip show -q opencv-python >/dev/null 2>&1; then python -m pip uninstall -q -y opencv-python; fi
  python -m pip install -q --no-deps --require-hashes -r requirements.lock
  # The CUDA 12 line: the last onnxruntime-gpu that links CUDA 12 replaces the lock's (CUDA 13 only)
  [ -z "$ort_pin" ] || python -m pip install -q --no-deps "$ort_pin"
  python -m pip install -q --no-deps --no-build-isolation -e .
fi
python -m pip check
