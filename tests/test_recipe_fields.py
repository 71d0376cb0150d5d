"""`rlhf recipe-fields` is generated from the config models; docs/recipes.md is its output and
the README's command list is `rlhf --help`'s."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.config import Recipe
from rlhf.recipe_fields import render_markdown, sections

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parent.parent


def _rlhf(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_docs_recipes_md_is_the_generated_reference():
    assert (ROOT / "docs" / "recipes.md").read_text() == render_markdown(sections()), \
        "docs/recipes.md is stale: rlhf recipe-fields --markdown > docs/recipes.md"


def _leaves(model, prefix=""):
    from rlhf.recipe_fields import _models_in

    for name, f in model.model_fields.items():
        key = prefix + name
        models = _models_in(f.annotation)
        if not models:
            yield key
        for m in models:
            yield from (k for k in _leaves(m, key + ".") if not k.endswith(".type") or len(models) == 1)


def test_every_field_of_every_section_and_variant_is_listed():
    listed = {f.path for s in sections() for f in s.fields}
    missing = set(_leaves(Recipe)) - listed
    assert missing == set() and len(listed) > 100


def test_the_command_prints_a_section_with_types_defaults_limits_and_descriptions():
    out = _rlhf("recipe-fields", "loss")
    assert out.returncode == 0
    assert "[loss (type: cispo)]" in out.stdout and "[loss (type: grpo)]" in out.stdout
    assert "  loss.eps_high: float = 5.0  (> 0.0)\n      Upper IS-weight bound, relative (M1's convention): weight <= 1 + eps_high" in out.stdout
    assert "loss.agg: \"token-mean\" | \"seq-mean\" = \"token-mean\"" in out.stdout
    assert "rollout" not in out.stdout
    out = _rlhf("recipe-fields", "rollout.engine")
    assert "[rollout.engine (type: vllm)]" in out.stdout
    assert "rollout.engine.tensor_parallel_size: int = 1  (>= 1)" in out.stdout
    out = _rlhf("recipe-fields", "lossy")
    assert out.returncode == 2 and "no recipe section 'lossy'; sections: advantages, data" in out.stderr


def test_the_readme_lists_every_command_of_rlhf_help():
    out = _rlhf("--help")
    commands = set(re.search(r"\{([a-z,-]+)\}", out.stdout).group(1).split(","))
    block = re.search(r"## Commands\n\n```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    listed = set(re.findall(r"^rlhf ([a-z-]+)", block.group(1), re.M))
    assert commands == listed, f"rlhf --help: {sorted(commands)}; README: {sorted(listed)}"
