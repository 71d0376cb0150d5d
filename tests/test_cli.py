"""The command line: validate prints every error at once; train stops before any work on bad
input (wrong type, unknown key, missing model directory, empty dataset)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parent.parent
QS = str(ROOT / "recipes" / "quickstart.yaml")


def _rlhf(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_validate_ok():
    out = _rlhf("validate", QS)
    assert out.returncode == 0 and "ok (loss=cispo" in out.stdout


def test_validate_prints_every_error_with_paths():
    out = _rlhf("validate", QS, "loss.eps_hgh=3", "rollout.temperature=hot", "train.mini_batches=0")
    assert out.returncode == 2
    assert "3 error(s)" in out.stderr
    assert "did you mean 'loss.eps_high'" in out.stderr
    assert "rollout.temperature" in out.stderr and "train.mini_batches" in out.stderr


def test_train_stops_before_work_on_missing_model_and_empty_data(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = _rlhf("train", QS, "model.build=null", f"model.path={tmp_path / 'no_model'}",
                f"data.train={{type: file, path: {empty}}}", f"run.output_dir={tmp_path}")
    assert out.returncode == 2
    assert "model.path" in out.stderr and "does not exist" in out.stderr
    assert "data.train.path" in out.stderr and "is empty" in out.stderr
    assert not (tmp_path / "quickstart").exists()  # nothing started


def test_validate_checks_the_sampling_filters_and_vllm_options():
    out = _rlhf("validate", QS, "rollout.top_k=0", "rollout.min_p=1.5", "rollout.eval_top_p=0",
                "rollout.engine={type: vllm, max_num_seqs: 0}")
    assert out.returncode == 2 and "4 error(s)" in out.stderr
    assert "rollout.top_k: Value error, must be -1 (off) or at least 1, got 0" in out.stderr
    assert "rollout.min_p" in out.stderr and "rollout.eval_top_p" in out.stderr
    assert "rollout.engine.max_num_seqs" in out.stderr
    out = _rlhf("validate", QS, "rollout.engine={type: vllm, tensor_parallel_size: 2}")
    assert out.returncode == 2
    assert "tensor_parallel_size=2 needs each engine on its own 2 GPUs: placement.mode=separate " \
           "and placement.rollout_gpus=2 (got mode=local, rollout_gpus=1.0)" in out.stderr
    out = _rlhf("validate", QS, "rollout.engine={type: vllm, tensor_parallel_size: 2, "
                "enable_prefix_caching: true}", "placement.mode=separate", "placement.rollout_gpus=2",
                "rollout.top_p=0.95", "rollout.min_p=0.05", "rollout.top_k=50")
    assert out.returncode == 0, out.stderr
