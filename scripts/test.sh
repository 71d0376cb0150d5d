#!/usr/bin/env bash
# Install (if needed) everything the test suite needs - venv, CPU torch, the project, the Docker
# engine and the sandbox base image - then run every test that needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ensure_docker.sh
.venv/bin/python -m sandboxes build-image
exec .venv/bin/python -m pytest -m "not gpu" -p no:cacheprovider "$@"
