#!/usr/bin/env bash
# Install (if needed) and run the CPU quickstart: warm-up + CISPO RL on arithmetic.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rlhf train recipes/quickstart.yaml "$@"
