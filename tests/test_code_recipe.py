"""The code verifier on the RL path: the shipped code_sandbox recipe runs a step through Docker."""

import json
from pathlib import Path

import pytest

from rlhf.config import load_recipe
from rlhf.driver import train

pytestmark = [pytest.mark.integration, pytest.mark.docker]
ROOT = Path(__file__).parent.parent


def test_code_sandbox_recipe_runs_a_step(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(ROOT / "recipes" / "code_sandbox.yaml",
                         [f"run.output_dir={tmp_path}", "run.steps=1"])
    train(recipe)
    rows = [json.loads(x) for x in (tmp_path / "code_sandbox" / "metrics.jsonl").read_text().splitlines()]
    step = [r for r in rows if r["kind"] == "train"][0]
    assert step["verifier/errors"] == 0  # every sample was judged, none crashed the verifier
    # queue time is only reported for samples whose program went through the sandbox pool
    assert "verifier/queue_s_mean" in step and "verifier/queue_s_max" in step
