#!/usr/bin/env bash
# Installs everything the tests need (system packages, .venv from requirements.lock, the package) and runs them.
# Usage: scripts/test.sh [--latest] [pytest arguments]
#   --latest  runs the suite on the newest versions pyproject.toml allows, in .venv-latest, so a new release of a
#             dependency meets us before it meets a user
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ "${1:-}" = "--latest" ]; then
  shift
  venv=.venv-latest
  bash scripts/setup.sh --latest test
else
  bash scripts/setup.sh test
fi
. "$venv/bin/activate"
export QT_QPA_PLATFORM=offscreen
python -m pytest "$@"
