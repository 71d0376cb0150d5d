"""End to end through Ray on CPU: a shortened quickstart, LoRA, and run-directory outputs."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.config import load_recipe
from rlhf.driver import train

pytestmark = pytest.mark.integration
QUICKSTART = Path(__file__).parent.parent / "recipes" / "quickstart.yaml"


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def _short(tmp_path, *extra):
    return load_recipe(QUICKSTART, [f"run.output_dir={tmp_path}", "run.name=q", "run.steps=2",
                                    "run.eval_every=0", "run.save_every=1", "warmup.steps=0",
                                    "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
                                    "rollout.max_new_tokens=16", "data.eval.size=8",
                                    "train.mini_batches=2", "model.build.hidden_size=32",
                                    "model.build.num_layers=2",
                                    "rewards.verifiers=[{name: 'tests.plugins:digit_count'}]",
                                    *extra])


def test_shortened_quickstart_changes_every_parameter(tmp_path):
    summary = train(_short(tmp_path))
    run = tmp_path / "q"
    before, after = _weights(run / "init_model"), _weights(run / "final_model")
    assert before.keys() == after.keys() and len(before) > 10
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == [], f"parameters RL did not change: {unchanged}"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2]
    for r in train_rows:
        assert torch.isfinite(torch.tensor(r["loss"])) and r["grad_norm"] > 0
        assert r["mismatch/pearson"] > 0.999  # same fp32 weights on both sides
        for key in ("reward/mean", "pass_rate", "response_len/p99", "finish/stop",
                    "clip_frac_upper", "entropy", "time/generate", "time/weight_sync"):
            assert key in r
    assert (run / "metrics.png").stat().st_size > 1000
    assert (run / "checkpoints" / "step_000002" / "learner" / ".metadata").exists()
    assert "eval/pass_rate" in summary


def test_lora_trains_only_adapters_and_merges(tmp_path):
    train(_short(tmp_path, "model.lora={r: 4, alpha: 8}", "run.save_every=0"))
    run = tmp_path / "q"
    before, after = _weights(run / "init_model"), _weights(run / "final_model")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    targeted = {k for k in before if k.endswith("proj.weight")}
    # merged adapters move exactly the targeted projection weights, every one of them
    assert len(targeted) == 14 and changed == targeted


def test_length_windows_advance_inside_a_run_and_cap_the_responses(tmp_path):
    """Windows 6 -> 10 -> 14 with patience 1 (two perplexity readings per window) and a loose
    tolerance: the window in force moves up every second step while responses fill it, and no
    response exceeds the window of its step."""
    windows = "rollout.length_windows={windows: [6, 10, 14], near_frac: 0.5, ppl_rel_tol: 100.0, patience: 1}"
    train(_short(tmp_path, "run.steps=5", "rollout.max_new_tokens=14", "run.save_every=0",
                 "rollout.repetition_stop.window=0", windows))
    rows = [json.loads(x) for x in (tmp_path / "q" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "train"]
    used = [r["window/current"] for r in steps]
    assert used == [6, 6, 10, 10, 14]
    for r in steps:
        assert r["response_len/max"] <= r["window/current"]
        assert r["window/next"] in (r["window/current"], *[w for w in (10, 14) if w > r["window/current"]])
