#!/usr/bin/env bash
# Create .venv with the CPU build of torch and this project (editable, with the dev extra).
# Idempotent and quick when nothing changed: the project is (re)installed only when
# pyproject.toml, TORCH_SPEC or the Python changed since the last install, or when the
# environment no longer imports this checkout (a fresh machine installs everything).
# TORCH_SPEC overrides the torch requirement (default: torch==2.13.0, the CPU build these
# machines carry; on a GPU machine use the CUDA build that matches your driver).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.m1rl-install
want="$( { cat pyproject.toml; echo "torch=${TORCH_SPEC:-torch==2.13.0}"; .venv/bin/python -V; } | sha256sum | cut -d' ' -f1)"
installed() {  # the stamp matches and the venv imports this checkout's packages
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
    .venv/bin/python -c "import pathlib, sys, rlhf, torch, ray, transformers; sys.exit(pathlib.Path(rlhf.__file__).resolve().parent != pathlib.Path('rlhf').resolve())" 2>/dev/null
}
if installed; then
  echo "setup: .venv is up to date (pyproject.toml unchanged); nothing to install"
else
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
  .venv/bin/pip install -q -e ".[dev]"
  echo "$want" > "$STAMP"
fi
.venv/bin/python -c "import torch, ray, transformers; print('env ok: torch', torch.__version__, '| ray', ray.__version__, '| transformers', transformers.__version__)"
