#!/usr/bin/env bash
# Prints the GPU line this machine's NVIDIA driver runs: 13 (driver R580 or newer), 12 (R525 to R579) or cpu (no
# driver, or one older than R525); the driver found goes to stderr. scripts/setup.sh installs that line unless told
# --cuda; mirage_desktop/doctor/lines.py holds the same thresholds (tests/test_doctor_lines.py runs this script).
set -euo pipefail
driver=""
if command -v nvidia-smi >/dev/null 2>&1; then
  # one line per GPU (all on the same driver): the first; no pipe, so nothing is cut short on a many-GPU machine
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null) || driver=""
  driver=${driver%%$'\n'*}
  driver=${driver//[[:space:]]/}
fi
branch=${driver%%.*}
if [ -z "$driver" ] || ! [ "$branch" -eq "$branch" ] 2>/dev/null; then
  echo "No NVIDIA driver answers (nvidia-smi): the CPU line" >&2
  echo cpu
elif [ "$branch" -ge 580 ]; then
  echo "NVIDIA driver $driver: the CUDA 13 line" >&2
  echo 13
elif [ "$branch" -ge 525 ]; then
  echo "NVIDIA driver $driver: the CUDA 12 line (R580 or newer would run CUDA 13, which RTX 50 cards need)" >&2
  echo 12
else
  echo "NVIDIA driver $driver is older than R525, which no GPU line runs on: the CPU line. Update the driver (R580" \
       "or newer for CUDA 13) for the GPU." >&2
  echo cpu
fi
