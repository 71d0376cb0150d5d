"""`rlhf sweep` (rlhf/sweep/): the statistics on hand-made numbers, validation of every run before
anything runs, the report from run files, and a 2-arm x 3-step sweep that runs, resumes without
rerunning finished runs, and writes its report."""

import json
import math
from pathlib import Path

import pytest
import yaml

from rlhf.config import RecipeError
from rlhf.sweep.report import build_results, markdown
from rlhf.sweep.spec import SweepSpec, build_recipes, expand, load_spec, reference_arm
from rlhf.sweep.stats import bootstrap_ci, mean_ci, paired_bootstrap, steps_to_threshold
from tests.test_eval_command import QS, _rlhf


@pytest.mark.unit
def test_mean_ci_is_student_t_over_seeds():
    m, lo, hi = mean_ci([0.2, 0.4, 0.6])
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t_{0.975, 2}; s = 0.2
    assert m == pytest.approx(0.4) and lo == pytest.approx(0.4 - half) and hi == pytest.approx(0.4 + half)
    assert mean_ci([0.3]) == (0.3, 0.3, 0.3)
    m, lo, hi = mean_ci([1.0, 3.0])  # t_{0.975, 1} = 12.706; s = sqrt(2)
    assert (lo, hi) == pytest.approx((2 - 12.706204736 * 1.0, 2 + 12.706204736 * 1.0))


@pytest.mark.unit
def test_bootstrap_and_paired_bootstrap_over_problems():
    m, lo, hi = bootstrap_ci([0.0] * 100 + [1.0] * 100, n_boot=4000)
    assert m == 0.5 and lo == pytest.approx(0.5 - 1.96 * 0.5 / math.sqrt(200), abs=0.012)
    assert hi == pytest.approx(0.5 + 1.96 * 0.5 / math.sqrt(200), abs=0.012)
    assert bootstrap_ci([0.25] * 7) == (0.25, 0.25, 0.25)
    before = [0.0, 0.25, 0.5, 1.0]
    assert paired_bootstrap(before, [b + 0.25 for b in before]) == pytest.approx((0.25, 0.25, 0.25))
    d, lo, hi = paired_bootstrap([0.0] * 50 + [1.0] * 50, [1.0] * 50 + [1.0] * 50)
    assert d == 0.5 and 0.35 < lo < 0.5 < hi < 0.65
    with pytest.raises(ValueError, match="same problems: 2 before, 3 after"):
        paired_bootstrap([0, 1], [0, 1, 1])


@pytest.mark.unit
def test_steps_to_threshold_interpolates_the_first_crossing():
    steps, vals = [0, 10, 20, 30], [0.1, 0.3, 0.5, 0.4]
    assert steps_to_threshold(steps, vals, 0.4) == pytest.approx(15.0)
    assert steps_to_threshold(steps, vals, 0.5) == pytest.approx(20.0)
    assert steps_to_threshold(steps, vals, 0.05) == 0.0
    assert steps_to_threshold(steps, vals, 0.6) is None


def _sweep_file(tmp_path: Path, **over) -> Path:
    spec = {"name": "s", "base": QS, "output_dir": str(tmp_path / "out"),
            "axes": {"loss": [{"type": "cispo"}, {"type": "grpo"}], "run.seed": [0, 1]},
            "reference": {"loss": "grpo"}, **over}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.unit
def test_expand_names_arms_and_seeds(tmp_path):
    spec = load_spec(_sweep_file(tmp_path))
    runs = expand(spec)
    assert [(r.arm, r.seed, r.name) for r in runs] == [
        ("loss=cispo", "0", "s-cispo-s0"), ("loss=grpo", "0", "s-grpo-s0"),
        ("loss=cispo", "1", "s-cispo-s1"), ("loss=grpo", "1", "s-grpo-s1")]   # seed-major
    assert runs[1].overrides == ("loss={type: grpo}", "run.seed=0")
    assert reference_arm(spec) == "loss=grpo"
    recipes = build_recipes(spec, tmp_path / "sweep.yaml")
    assert recipes["s-grpo-s1"].loss.type == "grpo" and recipes["s-grpo-s1"].run.seed == 1
    assert recipes["s-cispo-s0"].run.output_dir == str((tmp_path / "out" / "s" / "runs").resolve())


@pytest.mark.unit
def test_every_bad_run_is_reported_before_anything_runs(tmp_path):
    path = _sweep_file(tmp_path, axes={"train.mini_batches": [0, 4], "loss.eps_high": [-1.0, 0.3],
                                       "run.seed": [0]}, reference={"train.mini_batches": 8})
    with pytest.raises(RecipeError) as err:
        build_recipes(load_spec(path), path)
    msg = str(err.value)
    for run in ("s-0--1.0-s0", "s-0-0.3-s0", "s-4--1.0-s0"):
        assert f"{run}: " in msg
    assert "s-4-0.3-s0" not in msg  # the valid run
    assert "train.mini_batches" in msg and "loss.eps_high" in msg
    assert "reference: {'train.mini_batches': 8} names no arm" in msg
    path = _sweep_file(tmp_path, axes={"loss": [{"type": "cispo"}]}, reference=None)
    with pytest.raises(RecipeError, match="seed_axis: 'run.seed' is not one of the axes"):
        build_recipes(load_spec(path), path)
    path.write_text(yaml.safe_dump({"name": "s", "base": QS, "axes": {"run.seed": []}, "typo": 1}))
    with pytest.raises(RecipeError) as err:
        load_spec(path)
    assert "axes: Value error, every axis needs at least one value" in str(err.value)
    assert "typo: Extra inputs are not permitted" in str(err.value)


def _fake_run(root: Path, name: str, evals: dict[int, list[float]], entropy: float,
              summary: bool = True) -> None:
    d = root / name
    (d / "evals").mkdir(parents=True)
    rows = []
    for step, per_problem in evals.items():
        rows.append({"kind": "eval", "step": step, "eval/pass_rate": sum(per_problem) / len(per_problem)})
        (d / "evals" / f"step_{step:06d}.json").write_text(json.dumps({"step": step, "per_problem": per_problem}))
        if step:
            rows.append({"kind": "train", "step": step, "entropy": entropy, "clip_frac_upper": 0.1,
                         "clip_frac_lower": 0.05, "response_len/mean": 10.0 * step})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        (d / "summary.json").write_text("{}")


@pytest.mark.unit
def test_results_aggregate_seeds_problems_and_steps_to_the_reference(tmp_path):
    spec = SweepSpec(name="s", base="b.yaml", axes={"loss.type": ["cispo", "dapo"], "run.seed": [0, 1]},
                     reference={"loss.type": "dapo"})
    root = tmp_path / "runs"
    _fake_run(root, "s-cispo-s0", {0: [0, 0, 0, 0], 10: [1, 1, 0, 0], 20: [1, 1, 1, 0]}, 1.0)
    _fake_run(root, "s-cispo-s1", {0: [0, 0, 0, 0], 10: [1, 1, 1, 1], 20: [1, 1, 1, 1]}, 2.0)
    _fake_run(root, "s-dapo-s0", {0: [0, 0, 0, 0], 10: [1, 0, 0, 0], 20: [1, 1, 0, 0]}, 3.0)
    _fake_run(root, "s-dapo-s1", {0: [0, 0, 0, 0], 10: [0, 0, 0, 0], 20: [1, 1, 1, 0]}, 3.0)
    res = build_results(expand(spec), root, reference_arm(spec), None)
    cispo, dapo = res["arms"]["loss.type=cispo"], res["arms"]["loss.type=dapo"]
    assert [p["mean"] for p in cispo["pass_rate"]] == [0.0, 0.75, 0.875]
    assert cispo["final"]["low"] == pytest.approx(0.875 - 12.706204736 * 0.125 * math.sqrt(2) / math.sqrt(2))
    assert res["threshold"] == pytest.approx(0.625)  # dapo's final mean
    assert cispo["steps_to_threshold"] == pytest.approx(10 * 0.625 / 0.75)
    assert dapo["steps_to_threshold"] == pytest.approx(20.0)
    assert cispo["steps_ratio_to_reference"] == pytest.approx(10 * 0.625 / 0.75 / 20)
    assert cispo["final"]["problems"] == 4  # per-problem rates over seeds: 1, 1, 1, 0.5
    assert cispo["final"]["problems_low"] <= 0.75 and cispo["final"]["problems_high"] == 1.0
    assert cispo["train"]["entropy"] == [[10, 1.5], [20, 1.5]]
    assert cispo["train"]["clip_frac"] == [[10, pytest.approx(0.15)], [20, pytest.approx(0.15)]]
    table = markdown(res, "t")
    assert "| loss.type=cispo | 2 | 20 | 0.875 |" in table and "| 0.42 |" in table


@pytest.mark.unit
def test_a_run_stopped_after_its_last_eval_counts_only_when_that_eval_is_the_final_step(tmp_path):
    spec = SweepSpec(name="s", base="b.yaml", axes={"loss.type": ["cispo"], "run.seed": [0, 1]})
    root = tmp_path / "runs"
    _fake_run(root, "s-cispo-s0", {0: [0, 0], 20: [1, 1]}, 1.0)
    _fake_run(root, "s-cispo-s1", {0: [0, 0], 20: [1, 0]}, 1.0, summary=False)  # stopped in export
    steps = {"s-cispo-s0": 20, "s-cispo-s1": 20}
    res = build_results(expand(spec), root, None, None, steps)
    assert res["arms"]["loss.type=cispo"]["seeds"] == 2 and res["incomplete_runs"] == []
    assert res["arms"]["loss.type=cispo"]["final"]["mean"] == pytest.approx(0.75)
    res = build_results(expand(spec), root, None, None, {**steps, "s-cispo-s1": 30})  # not at its end
    assert res["arms"]["loss.type=cispo"]["seeds"] == 1 and res["incomplete_runs"] == ["s-cispo-s1"]
    assert build_results(expand(spec), root, None, None)["incomplete_runs"] == ["s-cispo-s1"]


def _quickstart_copies(tmp_path, n):
    """``n`` quickstart recipes named r0..r(n-1), their runs under ``tmp_path/runs``."""
    from rlhf.config import load_recipe

    recipes = {}
    for i in range(n):
        r = load_recipe(QS)
        recipes[f"r{i}"] = r.model_copy(update={"run": r.run.model_copy(update={
            "output_dir": str(tmp_path / "runs"), "name": f"r{i}"})})
    return recipes


@pytest.mark.unit
def test_parallel_runs_start_at_least_stagger_s_apart(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time

    from rlhf.sweep import runner

    starts = []

    def fake_start(state, sweep_root, address):
        starts.append(time.monotonic())
        state.proc = subprocess.Popen([sys.executable, "-c", "import pathlib, sys; "
                                       "p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True); "
                                       "(p / 'summary.json').write_text('{}')", str(state.dir)])
        state.status = "running"
        return state

    monkeypatch.setattr(runner, "_start", fake_start)
    recipes = _quickstart_copies(tmp_path, 3)
    states = runner.run_all(recipes, tmp_path / "sweep", parallel=3, poll_s=0.05, stagger_s=0.6)
    assert [s.status for s in states] == ["done"] * 3
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 3 and all(g >= 0.6 for g in gaps), gaps


@pytest.mark.unit
@pytest.mark.parametrize("retries,expect", [(0, "failed"), (1, "done")])
def test_a_failed_run_is_started_again_up_to_retries_times(tmp_path, monkeypatch, retries, expect):
    import subprocess
    import sys

    from rlhf.sweep import runner

    def fake_start(state, sweep_root, address):  # r0 fails at its first start (like vLLM's
        ok = state.name != "r0" or state.attempts > 1  # profiling race), succeeds when started again
        state.proc = subprocess.Popen([sys.executable, "-c", "import pathlib, sys; "
                                       "p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True); "
                                       "ok = sys.argv[2] == '1'; ok and (p / 'summary.json').write_text('{}'); "
                                       "sys.exit(0 if ok else 1)", str(state.dir), str(int(ok))])
        state.status = "running"
        return state

    monkeypatch.setattr(runner, "_start", fake_start)
    recipes = _quickstart_copies(tmp_path, 2)
    states = runner.run_all(recipes, tmp_path / "sweep", parallel=2, poll_s=0.05, retries=retries)
    assert [(s.name, s.status) for s in states] == [("r0", expect), ("r1", "done")]
    assert states[0].attempts == 1 + retries and states[1].attempts == 1


@pytest.mark.integration
def test_two_arm_sweep_runs_resumes_and_reports(tmp_path):
    """CI's small version of the study: 2 arms x 1 seed x 3 steps on the tiny quickstart model."""
    over = ["model.build.hidden_size=32", "model.build.num_layers=2", "rollout.max_new_tokens=12",
            "data.eval.size=8", "rewards.verifiers=[{name: 'tests.plugins:any_digit'}]",
            "logging.tensorboard=false", "run.steps=3", "run.eval_every=1", "run.save_every=1",
            "warmup.steps=0", "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
            "train.mini_batches=2", "run.plot=false"]
    path = _sweep_file(tmp_path, overrides=over, axes={"loss": [{"type": "cispo"}, {"type": "grpo"}],
                                                       "run.seed": [0]})
    out = _rlhf("sweep", str(path))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    root = tmp_path / "out" / "s"
    res = json.loads((root / "results.json").read_text())
    assert set(res["arms"]) == {"loss=cispo", "loss=grpo"}
    for arm in res["arms"].values():
        assert [p["step"] for p in arm["pass_rate"]] == [0, 1, 2, 3]
        assert arm["final"]["problems"] == 8
    assert (root / "pass_rate.png").stat().st_size > 0 and (root / "train_curves.png").exists()
    assert "| loss=cispo | 1 | 3 |" in (root / "results.md").read_text()
    summary = root / "runs" / "s-cispo-s0" / "summary.json"
    assert "eval/gain" in json.loads(summary.read_text())
    kept = (root / "runs" / "s-grpo-s0" / "metrics.jsonl").read_text()
    summary.unlink()  # s-cispo-s0 was interrupted after its last checkpoint
    out = _rlhf("sweep", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 runs, 1 already finished, 1 to run" in out.stdout + out.stderr
    assert (root / "runs" / "s-grpo-s0" / "metrics.jsonl").read_text() == kept  # not rerun
    assert "resumed from" in (root / "logs" / "s-cispo-s0.log").read_text() and summary.exists()
