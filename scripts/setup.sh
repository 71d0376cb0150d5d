#!/usr/bin/env bash
# Create .venv with the CPU build of torch and this project (editable, with the dev extra).
# Idempotent. TORCH_SPEC overrides the torch requirement (default: torch==2.13.0, the CPU build
# these machines carry; on a GPU machine use the CUDA build that matches your driver).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/python -c "import torch, ray, transformers; print('env ok: torch', torch.__version__, '| ray', ray.__version__, '| transformers', transformers.__version__)"
