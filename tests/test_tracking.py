"""Experiment tracking (rlhf/driver/tracking.py): the same metric names and values in
metrics.jsonl, TensorBoard, MLflow and W&B, the recipe and git commit as run config, optional
packages imported only when asked for, and labelled plots."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.config import parse_recipe
from rlhf.driver import tracking
from rlhf.driver.resume import ResumePoint

ROOT = Path(__file__).parent.parent
QS = str(ROOT / "recipes" / "quickstart.yaml")
SHORT = ["run.steps=2", "run.eval_every=0", "run.save_every=0", "warmup.steps=2",
         "warmup.batch_size=4", "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
         "rollout.max_new_tokens=16", "data.eval.size=4", "train.mini_batches=2",
         "model.build.hidden_size=32", "model.build.num_layers=2",
         "rewards.verifiers=[{name: 'tests.plugins:digit_count'}]"]


def _rlhf(*args, env=None, cwd=ROOT, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _jsonl(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.integration
def test_train_logs_the_same_metrics_to_tensorboard_mlflow_and_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's local file store, no server
    out = _rlhf("train", QS, f"run.output_dir={tmp_path}", "run.name=t", *SHORT,
                "logging.wandb={mode: offline, project: p}",
                f"logging.mlflow={{tracking_uri: 'file://{tmp_path}/mlruns', experiment: e}}",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "t"
    rows = _jsonl(run)
    train = [r for r in rows if r["kind"] == "train"]
    warm = [r for r in rows if r["kind"] == "warmup"]
    assert [r["step"] for r in train] == [1, 2] and [r["warmup_step"] for r in warm] == [1, 2]
    names = [k for k in train[0] if k not in ("kind", "step")]
    assert len(names) > 20 and "reward/mean" in names and "time/score_adv" in names
    info = json.loads((run / "run_info.json").read_text())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert info["git_commit"] == commit

    # TensorBoard (on by default: the package is installed): every train metric at its step,
    # the warm-up on its own axis, the recipe and commit as text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(run / "tensorboard"))
    tb.Reload()
    for name in names:
        got = [(e.step, e.value) for e in tb.Scalars(name)]
        assert got == [(r["step"], pytest.approx(float(r[name]), rel=1e-6, abs=1e-30))
                       for r in train], name
    text = tb.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert commit in text and '"eps_high": 5.0' in text
    tbw = EventAccumulator(str(run / "tensorboard" / "warmup"))
    tbw.Reload()
    assert [(e.step, e.value) for e in tbw.Scalars("warmup/sft_loss")] == [
        (r["warmup_step"], pytest.approx(r["warmup/sft_loss"], rel=1e-6)) for r in warm]

    # MLflow, a local store: same names, steps and values; the recipe as params, the commit tag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{tmp_path}/mlruns")
    (ml,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    for name in names:
        hist = sorted((m.step, m.value) for m in client.get_metric_history(ml.info.run_id, name))
        assert hist == [(r["step"], pytest.approx(float(r[name]))) for r in train], name
    assert ml.data.params["loss.type"] == "cispo" and ml.data.params["run.steps"] == "2"
    assert ml.data.tags["git_commit"] == commit

    # W&B offline: a local run under the run directory, its id kept for a resume
    ids = json.loads((run / "tracking.json").read_text())
    (wb,) = list((run / "wandb").glob(f"offline-run-*-{ids['wandb']}"))
    assert (wb / f"run-{ids['wandb']}.wandb").stat().st_size > 1000
    assert ids["mlflow"] == ml.info.run_id


class _FakeRun:
    def __init__(self, calls, kw):
        self.calls, self.id = calls, "fake-id"
        calls.append(("init", kw))

    def define_metric(self, name, step_metric=None):
        self.calls.append(("define_metric", name, step_metric))

    def log(self, values):
        self.calls.append(("log", values))

    def finish(self):
        self.calls.append(("finish",))


@pytest.mark.unit
def test_wandb_gets_the_jsonl_names_on_two_step_axes_and_the_run_config(tmp_path, monkeypatch):
    """W&B's offline files are not readable through its public API, so this checks what the
    sink hands to ``wandb`` with a stand-in module, imported through the same hook."""
    calls: list = []
    fake = type(sys)("wandb")
    fake.init = lambda **kw: _FakeRun(calls, kw)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    recipe = parse_recipe({"model": {"build": {}}, "data": {"train": {"type": "synthetic"}},
                           "run": {"name": "r"}, "logging": {"tensorboard": False,
                                                             "wandb": {"mode": "offline"}}})
    t = tracking.Tracker(tmp_path, recipe, ResumePoint())
    t.log({"kind": "warmup", "step": 0, "warmup_step": 1, "warmup/sft_loss": 2.5})
    t.log({"kind": "train", "step": 1, "reward/mean": 0.25, "finish/stop": 1})
    t.close()
    init = calls[0][1]
    assert init["mode"] == "offline" and init["name"] == "r" and init["dir"] == str(tmp_path)
    assert init["config"]["recipe"]["run"]["name"] == "r" and "git_commit" in init["config"]
    assert ("define_metric", "warmup/*", "warmup/step") in calls
    assert ("define_metric", "*", "step") in calls
    logs = [c[1] for c in calls if c[0] == "log"]
    assert logs == [{"warmup/sft_loss": 2.5, "warmup/step": 1},
                    {"reward/mean": 0.25, "finish/stop": 1.0, "step": 1}]
    assert calls[-1] == ("finish",)
    assert json.loads((tmp_path / "tracking.json").read_text()) == {"wandb": "fake-id"}


@pytest.mark.unit
def test_an_optional_sink_without_its_package_names_the_field_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(RuntimeError, match=r"logging.wandb is set but the wandb package is not "
                                           r"installed \(pip install 'm1rl\[wandb\]'"):
        tracking.import_optional("wandb", "logging.wandb")
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name: None if name in ("mlflow", "tensorboard") else real(name))
    recipe = parse_recipe({"model": {"build": {}}, "data": {"train": {"type": "synthetic"}},
                           "logging": {"mlflow": {}}})
    assert tracking.logging_problems(recipe.logging) == [
        "logging.mlflow: the mlflow package is not installed (pip install 'm1rl[mlflow]')"]
    assert tracking.tensorboard_enabled(recipe.logging) is False  # auto, not installed: off


@pytest.mark.unit
def test_resume_drops_redone_records_and_purges_tensorboard_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = parse_recipe({"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}})
    t = tracking.Tracker(tmp_path, recipe, ResumePoint())
    for s in (1, 2, 3):
        t.log({"kind": "train", "step": s, "loss": float(s)})
    t.close()
    # TensorBoard reads event files in name order, whose first key is the time in seconds (a
    # resumed run is a later process); within one process a counter follows, which sorts .10
    # before .9, so let a second pass
    time.sleep(1.1)
    t = tracking.Tracker(tmp_path, recipe, ResumePoint(step=1))  # checkpoint at step 1
    t.log({"kind": "train", "step": 2, "loss": 20.0})
    t.close()
    assert [(r["step"], r["loss"]) for r in _jsonl(tmp_path)] == [(1, 1.0), (2, 20.0)]
    tb = EventAccumulator(str(tmp_path / "tensorboard"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("loss")] == [(1, 1.0), (2, 20.0)]


@pytest.mark.unit
def test_plot_panels_have_labelled_axes(tmp_path):
    from rlhf.driver.metrics import metrics_figure

    rows = [{"kind": "train", "step": s, "reward/mean": 0.1 * s, "pass_rate": 0.2,
             "response_len/mean": 10.0} for s in (1, 2)]
    fig = metrics_figure(rows)
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert labels == [("RL step", "mean reward"), ("RL step", "pass rate"),
                      ("RL step", "mean response length (tokens)")]
