#!/usr/bin/env bash
# Installs everything the tests need (system packages, .venv, the package with its test extras) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
export QT_QPA_PLATFORM=offscreen
python -m pytest "$@"
