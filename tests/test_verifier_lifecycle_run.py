"""Verifiers through `rlhf train`: a backend that is down stops the run before training, a step
that cannot be judged stops it with the reason (never a run of zero rewards), and the verifiers
are closed at the end either way."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parent.parent
SMALL = ["model.build={hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1}",
         "warmup.steps=0", "run.steps=2", "data.prompts_per_step=4", "data.eval=null",
         "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8", "run.plot=false"]


def train(tmp_path, verifiers: str):
    return subprocess.run([sys.executable, "-m", "rlhf.cli", "train", "recipes/quickstart.yaml",
                           *SMALL, f"run.output_dir={tmp_path}", f"rewards.verifiers={verifiers}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def rows(tmp_path):
    path = tmp_path / "quickstart" / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_backend_that_is_down_stops_the_run_before_training(tmp_path):
    out = train(tmp_path, f"[{{name: 'tests.plugins:Lifecycle', options: {{marks: '{tmp_path}', down: true}}}}]")
    assert out.returncode == 3, out.stderr[-2000:]
    assert "Lifecycle: the backend is down (start it with `make up`)" in out.stderr
    assert (tmp_path / "preflight").exists() and (tmp_path / "closed").exists()
    assert rows(tmp_path) == []  # nothing trained


def test_a_step_that_cannot_be_judged_stops_the_run_and_closes_the_verifiers(tmp_path):
    out = train(tmp_path, f"[{{name: 'tests.plugins:broken', when: arithmetic}}, {{name: 'tests.plugins:Lifecycle', "
                          f"when: '*', options: {{marks: '{tmp_path}'}}}}]")
    assert out.returncode == 3, out.stderr[-2000:]
    assert "8 of 8 samples could not be judged (more than rewards.max_error_rate=0.2)" in out.stderr
    assert "RuntimeError: verifier backend down" in out.stderr
    assert "Run the same command again to resume" in out.stderr
    assert [r for r in rows(tmp_path) if r["kind"] == "train"] == []
    assert (tmp_path / "closed").exists()
