"""`rlhf export CHECKPOINT OUT_DIR` (rlhf/driver/export.py): a step checkpoint or a run directory
becomes a Hugging Face safetensors checkpoint with the step's weights, in the training dtype."""

from pathlib import Path

import pytest
import torch

from tests.test_eval_command import QS, _rlhf  # the CLI runner the eval tests use


def _logits(model_dir: Path, dtype=torch.float32) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    assert lm.dtype == dtype
    with torch.no_grad():
        return lm(torch.arange(1, 17)[None]).logits.float()


@pytest.mark.integration
def test_export_writes_the_steps_weights_as_safetensors(tmp_path):
    out = _rlhf("train", QS, f"run.output_dir={tmp_path}", "run.name=x", "run.steps=2",
                "run.save_every=1", "run.eval_every=0", "model.build.hidden_size=32",
                "model.build.num_layers=2", "rollout.max_new_tokens=12", "data.eval.size=4",
                "warmup.steps=0", "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
                "train.mini_batches=1", "train.optim.lr=0.05", "logging.tensorboard=false",
                "rewards.verifiers=[{name: 'tests.plugins:any_digit'}]")
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "x"
    out = _rlhf("export", str(run), str(tmp_path / "latest"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step_000002" in out.stdout
    assert (tmp_path / "latest" / "model.safetensors").exists()
    assert not list((tmp_path / "latest").glob("*.bin"))
    final = _logits(run / "final_model")
    assert torch.equal(_logits(tmp_path / "latest"), final)  # the run directory -> its newest step
    step1 = run / "checkpoints" / "step_000001"
    assert _rlhf("export", str(step1), str(tmp_path / "s1"), "--dtype", "bfloat16").returncode == 0
    s1 = _logits(tmp_path / "s1", torch.bfloat16)
    assert not torch.allclose(s1, final, atol=1e-2)  # step 1's weights, not the final ones
    assert (tmp_path / "s1" / "tokenizer_config.json").exists()
    bad = _rlhf("export", str(run / "final_model"), str(tmp_path / "y"))
    assert bad.returncode == 2 and "already a Hugging Face model directory" in bad.stderr
    bad = _rlhf("export", str(tmp_path / "nothing"), str(tmp_path / "y"))
    assert bad.returncode == 2 and "neither a Hugging Face model directory" in bad.stderr
