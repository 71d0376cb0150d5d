"""Packaging: the project metadata builds without setuptools deprecations, and every runtime
dependency is used by the toolkit's own code."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parent.parent
# distribution -> what the code imports (or, for tensorboard, the torch module that needs it)
IMPORTS = {"pyyaml": "yaml", "math-verify": "math_verify", "tensorboard": "torch.utils.tensorboard"}


def test_metadata_builds_with_warnings_as_errors(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    out = subprocess.run([sys.executable, "-W", "error", "-c",
                          "import os, setuptools.build_meta as b; os.mkdir('meta'); "
                          "print(b.prepare_metadata_for_build_wheel('meta'))"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = (tmp_path / "meta" / out.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in meta


def test_every_runtime_dependency_is_imported_by_the_toolkit():
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    deps = re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)  # (tomllib is Python 3.11+)
    assert len(deps) > 10
    code = "\n".join(p.read_text() for pkg in ("rlhf", "rollout", "rewards", "sandboxes")
                     for p in (ROOT / pkg).rglob("*.py"))
    unused = []
    for dep in deps:
        dist = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower()
        module = IMPORTS.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from) {re.escape(module)}\b", code, re.M):
            unused.append(dist)
    assert unused == []
