"""Safe resume (rlhf/driver/resume.py): a changed recipe refuses to continue a checkpoint unless
allowed, an interrupted warm-up resumes where it was without duplicate metrics rows, and Ctrl-C
says how to resume without a traceback."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from rlhf.config import Recipe, parse_recipe
from rlhf.driver.resume import RESUME_SAFE, RecipeChanged, ResumePoint, check_recipe, recipe_changes

ROOT = Path(__file__).parent.parent
QS = str(ROOT / "recipes" / "quickstart.yaml")
TINY = ["data.prompts_per_step=4", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8",
        "data.eval.size=4", "train.mini_batches=1", "model.build.hidden_size=32",
        "model.build.num_layers=2", "run.eval_every=0", "logging.tensorboard=false"]


def _rlhf(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _minimal(**sections) -> dict:
    return {"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}, **sections}


@pytest.mark.unit
def test_changes_outside_the_safe_fields_are_listed_with_old_and_new_values():
    old = parse_recipe(_minimal()).model_dump(mode="json")
    new = parse_recipe(_minimal(run={"steps": 99, "eval_every": 5}, loss={"eps_high": 0.3},
                                logging={"tensorboard": False},
                                data={"train": {"type": "synthetic", "size": 10}})).model_dump(mode="json")
    assert [str(c) for c in recipe_changes(old, new)] == [
        "data.train.size: 1000 -> 10", "loss.eps_high: 5.0 -> 0.3"]


@pytest.mark.unit
def test_every_resume_safe_field_exists():
    for path in RESUME_SAFE:
        model = Recipe
        for part in path.split("."):
            assert part in model.model_fields, path
            model = model.model_fields[part].annotation


@pytest.mark.unit
def test_check_recipe_refuses_then_logs_an_allowed_change(tmp_path):
    ckpt = tmp_path / "checkpoints" / "step_000002"
    check_recipe(tmp_path, parse_recipe(_minimal()), None)  # a fresh run writes recipe.json
    changed = parse_recipe(_minimal(loss={"eps_high": 0.3}))
    with pytest.raises(RecipeChanged, match=r"(?s)1 field\(s\) changed:\n  - loss.eps_high: 5.0 -> 0.3"
                                            r".*--allow-recipe-change"):
        check_recipe(tmp_path, changed, ckpt)
    assert json.loads((tmp_path / "recipe.json").read_text())["loss"]["eps_high"] == 5.0
    assert [str(c) for c in check_recipe(tmp_path, changed, ckpt, allow_change=True)] == [
        "loss.eps_high: 5.0 -> 0.3"]
    assert json.loads((tmp_path / "recipe.json").read_text())["loss"]["eps_high"] == 0.3
    logged = json.loads((tmp_path / "recipe_changes.jsonl").read_text())
    assert logged == {"checkpoint": "step_000002", "changes": ["loss.eps_high: 5.0 -> 0.3"]}


@pytest.mark.unit
def test_resume_point_keeps_only_records_before_it():
    warm = [{"kind": "warmup", "step": 0, "warmup_step": i} for i in (1, 2, 3)]
    ev0, t1, t2 = ({"kind": "eval", "step": 0}, {"kind": "train", "step": 1},
                   {"kind": "train", "step": 2})
    rows = [*warm, ev0, t1, t2]
    assert [r for r in rows if ResumePoint().keeps(r)] == []
    assert [r for r in rows if ResumePoint(0, 2).keeps(r)] == warm[:2]
    assert [r for r in rows if ResumePoint(0, 3).keeps(r)] == warm  # eval at step 0 is redone
    assert [r for r in rows if ResumePoint(1, 3).keeps(r)] == [*warm, ev0, t1]


@pytest.mark.integration
def test_a_changed_recipe_refuses_to_resume_through_the_cli(tmp_path):
    base = ["train", QS, f"run.output_dir={tmp_path}", "run.name=r", "run.steps=1",
            "warmup.steps=0", *TINY]
    out = _rlhf(*base)
    assert out.returncode == 0, out.stderr[-2000:]
    # console noise kept out: every actor's weight-loading bar, Ray's token-auth notice
    assert "Loading weights" not in out.stderr and "Token authentication is enabled" not in out.stderr
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    out = _rlhf(*base, "run.steps=2", "loss.eps_high=0.3", "train.optim.lr=3e-4")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "2 field(s) changed" in out.stderr
    assert "loss.eps_high: 5.0 -> 0.3" in out.stderr and "train.optim.lr: 0.0001 -> 0.0003" in out.stderr
    assert "run.steps" not in out.stderr  # running longer is what resuming is for
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before  # nothing ran
    out = _rlhf(*base, "run.steps=2", "loss.eps_high=0.3", "train.optim.lr=3e-4",
                "--allow-recipe-change")
    assert out.returncode == 0, out.stderr[-2000:]
    said = out.stdout + out.stderr
    assert "recipe changed since" in said and "loss.eps_high: 5.0 -> 0.3" in said
    assert [r["step"] for r in _rows(tmp_path / "r") if r["kind"] == "train"] == [1, 2]
    assert "loss.eps_high" in (tmp_path / "r" / "recipe_changes.jsonl").read_text()


@pytest.mark.integration
def test_ctrl_c_in_the_warm_up_then_resume_finishes_it_without_duplicate_rows(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once the warm-up's
    first checkpoint exists: exit 130, the resume message, no traceback. The same command then
    continues the warm-up from its checkpoint; every row appears once."""
    cmd = [sys.executable, "-m", "rlhf.cli", "train", QS, f"run.output_dir={tmp_path}",
           "run.name=w", "run.steps=1", "warmup.steps=40", "warmup.save_every=2",
           "warmup.batch_size=64", *TINY, "model.build.hidden_size=64"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    driver = tmp_path / "w" / "checkpoints" / "step_000000" / "driver.json"
    deadline = time.time() + 300
    while not driver.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err, err[-3000:]
    done = json.loads(driver.read_text())["warmup"]["step"]
    assert 2 <= done < 40
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"(warm-up step {done})" in out.stdout  # continued, not restarted
    rows = _rows(tmp_path / "w")
    counts = Counter((r["kind"], r["step"], r.get("warmup_step")) for r in rows)
    assert [k for k, n in counts.items() if n > 1] == []
    assert sorted(r["warmup_step"] for r in rows if r["kind"] == "warmup") == list(range(1, 41))
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 1]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1]
