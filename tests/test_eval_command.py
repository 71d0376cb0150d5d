"""`rlhf eval RECIPE --checkpoint DIR` (rlhf/driver/eval_command.py): pass@k and mean@k of a step
checkpoint, a run directory or a Hugging Face model directory, as a table and a JSON report."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.driver.eval_command import default_ks, pass_at_k, summarize

ROOT = Path(__file__).parent.parent
QS = str(ROOT / "recipes" / "quickstart.yaml")


def _rlhf(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.unit
def test_pass_at_k_is_the_chance_that_some_k_of_the_samples_hold_a_correct_one():
    for n in (1, 4, 6):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets))
    with pytest.raises(ValueError, match="pass@8 needs at least 8 samples"):
        pass_at_k(4, 1, 8)
    assert default_ks(32) == [1, 2, 4, 8, 16, 32] and default_ks(6) == [1, 2, 4, 6]
    assert default_ks(1) == [1]
    s = summarize([[True, False, False, False], [True, True, True, True]], [1, 4])
    assert s["pass@1"] == pytest.approx(0.625) and s["pass@4"] == 1.0 and s["mean@4"] == 0.625


@pytest.mark.integration
def test_eval_of_a_checkpoint_prints_pass_at_k_and_writes_json(tmp_path):
    common = [f"run.output_dir={tmp_path}", "run.name=e", "model.build.hidden_size=32",
              "model.build.num_layers=2", "rollout.max_new_tokens=12", "data.eval.size=6",
              "rewards.verifiers=[{name: 'tests.plugins:any_digit'}]", "logging.tensorboard=false"]
    out = _rlhf("train", QS, *common, "run.steps=1", "run.eval_every=1", "warmup.steps=0",
                "data.prompts_per_step=4", "rollout.samples_per_prompt=4", "train.mini_batches=1",
                "train.optim.lr=0.05", "rollout.eval_samples=4", "rollout.eval_top_p=0.95")
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "e"
    reports = {}
    for name, ckpt in (("run", run), ("final", run / "final_model"), ("init", run / "init_model")):
        path = tmp_path / f"{name}.json"
        out = _rlhf("eval", QS, *common, "rollout.eval_samples=4", "--m1", "--checkpoint",
                    str(ckpt), "--out", str(path))
        assert out.returncode == 0, out.stderr[-3000:]
        assert "6 problems x 4 samples (hf engine, temperature 1.0, top-p 0.95" in out.stdout
        for key in ("pass@1", "pass@2", "pass@4", "mean@4"):
            assert f"  {key} " in out.stdout
        reports[name] = json.loads(path.read_text())
    rep = reports["run"]
    assert rep["checkpoint"] == str(run / "checkpoints" / "step_000001")
    counts = rep["correct_per_problem"]
    assert len(counts) == 6 and 0 < sum(counts) < 24  # the reward has variance here
    for k in (1, 2, 4):
        assert rep[f"pass@{k}"] == pytest.approx(sum(pass_at_k(4, c, k) for c in counts) / 6)
    assert rep["pass@1"] == pytest.approx(rep["mean@4"]) and rep["pass@4"] >= rep["pass@2"]
    # the step checkpoint's weights reached the engine: the same samples as the final model
    # (same weights, same per-prompt seeds), not those of the initial one
    assert reports["final"]["correct_per_problem"] == counts
    assert reports["final"]["response_len_mean"] == rep["response_len_mean"]
    assert (reports["init"]["correct_per_problem"], reports["init"]["response_len_mean"]) != \
        (counts, rep["response_len_mean"])
    # `rlhf eval --m1` of the step-1 checkpoint reproduces the run's own step-1 evaluation, whose
    # sampling is set to M1's here (the same per-prompt seeds and settings on the same weights),
    # and of the initial model the run's step-0 one
    for step, name in ((1, "run"), (0, "init")):
        in_run = json.loads((run / "evals" / f"step_{step:06d}.json").read_text())["per_problem"]
        assert [round(4 * x) for x in in_run] == reports[name]["correct_per_problem"], step
    out = _rlhf("eval", QS, *common, "--checkpoint", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "is neither a Hugging Face model directory" in out.stderr
