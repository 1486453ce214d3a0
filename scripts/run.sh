#!/usr/bin/env bash
# Installs Mirage into .venv (first run only takes a while) and starts the app. Extra arguments go to `mirage`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mirage "$@"
