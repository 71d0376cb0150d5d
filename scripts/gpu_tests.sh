#!/usr/bin/env bash
# The GPU test suite (`pytest -m gpu`) on a lent GPU machine, after vLLM/Ray staging:
#   1st call: carry .gpu-stage/parts/part00 + SHA256SUMS, copy them to /tmp/gpu-stage
#   2nd call: carry part01 + install.sh + .gpu-wheels, then
#             cp .gpu-stage/parts/part01 /tmp/gpu-stage/ && eval "$(bash .gpu-stage/parts/install.sh)" \
#             && bash scripts/gpu_tests.sh
# (shared/gpu/README.md has the staging steps; .gpu-wheels holds the project's pure-Python
# dependencies the image lacks, `pip download --no-deps` for cp312.)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu_env.sh
python3 -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q -rA -s "$@"
