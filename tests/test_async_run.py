"""One-step-off runs through Ray on CPU (tiny model, the transformers engine): the order of the
driver's calls, staleness in the metrics, exact resume with a batch in flight, and a rollout
worker killed with a batch in flight."""

import json
import math
from pathlib import Path

import pytest
import ray

from rlhf.config import load_recipe
from rlhf.driver import train
from rlhf.driver.roles import LearnerGroup, RolloutGroup
from rlhf.driver.run import Run

pytestmark = pytest.mark.integration
QUICKSTART = Path(__file__).parent.parent / "recipes" / "quickstart.yaml"


@pytest.fixture(scope="module")
def cluster():
    """One Ray cluster for the module's runs (each run connects and disconnects)."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    yield c.address
    ray.shutdown()
    c.shutdown()


def _recipe(out, name, steps, *extra):
    return load_recipe(QUICKSTART, [
        f"run.output_dir={out}", f"run.name={name}", f"run.steps={steps}", "run.eval_every=0",
        "run.save_every=0", "run.plot=false", "warmup.steps=0", "data.train.size=64",
        "data.eval=null", "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
        "rollout.max_new_tokens=12", "train.mini_batches=2",
        "model.build.hidden_size=32", "model.build.num_layers=2", "logging.tensorboard=false",
        "train.optim.lr=1e-3", "rewards.verifiers=[{name: 'tests.plugins:digit_count'}]",
        "train.async_mode=one_step", *extra])


def _rows(run_dir: Path) -> dict[int, dict]:
    """Train rows by step, without wall-clock values."""
    timing = lambda k: k.startswith("time/") or k.endswith("_per_s")  # noqa: E731
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if not timing(k)}
            for r in rows if r["kind"] == "train"}


def _record(monkeypatch, events: list, groups: list | None = None) -> None:
    """Wrap the driver's role calls so that each appends to ``events``."""
    submit, collect, learn = RolloutGroup.submit, RolloutGroup.collect, LearnerGroup.train
    push = Run.push_weights

    def on_submit(self, prompts, sampling, seeds):
        events.append("submit")
        if groups is not None:
            groups.append(self)
        return submit(self, prompts, sampling, seeds)

    def on_collect(self, job):
        out = collect(self, job)
        events.append("collect")
        return out

    def on_train(self, samples, k):
        events.append("train")
        out = learn(self, samples, k)
        events.append("trained")
        return out

    def on_push(self, bump=True):
        events.append("push")
        return push(self, bump)

    monkeypatch.setattr(RolloutGroup, "submit", on_submit)
    monkeypatch.setattr(RolloutGroup, "collect", on_collect)
    monkeypatch.setattr(LearnerGroup, "train", on_train)
    monkeypatch.setattr(Run, "push_weights", on_push)


@pytest.fixture(scope="module")
def straight(cluster, tmp_path_factory):
    """An uninterrupted one_step run of 4 steps (no checkpoint until the end)."""
    out = tmp_path_factory.mktemp("straight")
    mp = pytest.MonkeyPatch()
    events: list[str] = []
    _record(mp, events)
    try:
        train(_recipe(out, "straight", 4), address=cluster)
    finally:
        mp.undo()
    return _rows(out / "straight"), events


def test_the_next_batch_is_submitted_before_the_learners_train(straight):
    rows, events = straight
    step = ["collect", "push", "submit", "train", "trained"]  # push between collect and submit
    assert events == ["submit", "collect", "submit", "train", "trained",
                      *step, *step, *step, "collect", "push"]  # the final save drains
    assert [rows[s]["train/staleness"] for s in (1, 2, 3, 4)] == [0, 1, 1, 1]
    assert [rows[s]["policy_version"] for s in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert "is_weight_mean" not in rows[1]  # fresh samples: the synchronous maths
    # the engine/learner mismatch is measured on fresh samples only (stale ones differ by an update)
    assert rows[1]["mismatch/pearson"] > 0.999 and "mismatch/pearson" not in rows[2]
    for s in (2, 3, 4):  # stale ones carry the truncated weight pi_old / pi_rollout
        assert 0 < rows[s]["is_weight_mean"] <= 2.0 and rows[s]["is_weight_mean"] != 1.0


def test_resume_with_a_batch_in_flight_matches_the_uninterrupted_run(straight, cluster, tmp_path):
    """Stopped after step 2 (batch 3 in flight, finished into the checkpoint), resumed to 4
    with a checkpoint (a drain) at every step: every per-step metric equals the straight run's."""
    train(_recipe(tmp_path, "resumed", 2), address=cluster)
    ckpt = json.loads((tmp_path / "resumed" / "checkpoints" / "step_000002" / "driver.json").read_text())
    assert ckpt["pending"]["batch"]["step"] == 2  # 0-based: the third batch
    assert {c["policy_version"] for c in ckpt["pending"]["completions"]} == {1}
    train(_recipe(tmp_path, "resumed", 4, "run.save_every=1"), address=cluster)
    resumed = _rows(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2, 3, 4]
    for s in (1, 2, 3, 4):
        assert resumed[s] == straight[0][s], f"step {s} differs"


def test_a_worker_killed_with_a_batch_in_flight_is_restarted_and_the_batch_reissued(
        straight, cluster, tmp_path, monkeypatch):
    """Rollout worker 0 is killed just after the third batch is submitted (it generates while
    the learners train on the second): it is restarted with the last pushed weights and its
    prompts re-issued, so the run's metrics equal the uninterrupted run's."""
    events: list[str] = []
    groups: list[RolloutGroup] = []
    _record(monkeypatch, events, groups)
    submit = RolloutGroup.submit

    def submit_then_kill(self, prompts, sampling, seeds):
        job = submit(self, prompts, sampling, seeds)
        if events.count("submit") == 3:
            ray.kill(self.actors[0])
        return job

    monkeypatch.setattr(RolloutGroup, "submit", submit_then_kill)
    train(_recipe(tmp_path, "killed", 3), address=cluster)
    assert groups[0].restarts == 1
    killed = _rows(tmp_path / "killed")
    for s in (1, 2, 3):
        assert killed[s] == straight[0][s], f"step {s} differs"


def test_the_learner_accounts_staleness_and_weights_stale_tokens(tiny_model_dir):
    """Learner at version 1, half the samples from version 0: ``train/staleness`` is their
    mean age, and the stale tokens' weight is min(pi_old / pi_rollout, cap) with pi_old the
    learner's own log-probabilities before the update (K = 1: the update's forward pass)."""
    import torch

    from rlhf.config import CispoLoss, ModelConfig, TrainConfig
    from rlhf.learner.batching import TrainSample
    from rlhf.learner.worker import LearnerWorker

    def samples(seed, version):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(4):
            ids = torch.randint(5, 200, (int(torch.randint(6, 14, (1,), generator=g)),), generator=g).tolist()
            rollout = (-torch.rand(len(ids) - 3, generator=g) * 6).tolist()  # the sampler's
            out.append(TrainSample(ids, 3, float(torch.randn(1, generator=g)), rollout, version))
        return out

    w = LearnerWorker(tiny_model_dir, ModelConfig(path=tiny_model_dir),
                      TrainConfig(micro_batch_tokens=64, stale_is_cap=1.5), CispoLoss(), True)
    w.join("127.0.0.1", 29733)
    try:
        first = w.train([samples(0, 0)])
        assert first["train/staleness"] == 0 and "is_weight_mean" not in first
        fresh, stale = samples(1, 1), samples(2, 0)
        old = w.compute_logprobs(stale)  # version 1, before the update
        weights = torch.tensor([min(math.exp(o - r), 1.5) for s, lp in zip(stale, old)
                                for o, r in zip(lp, s.rollout_logprobs)])
        m = w.train([fresh + stale])
        assert m["train/staleness"] == 0.5 and m["train/staleness_max"] == 1
        assert m["is_weight_mean"] == pytest.approx(float(weights.mean()), rel=1e-5)
        assert m["is_weight_capped_frac"] == pytest.approx(float((weights >= 1.5).float().mean()))
        assert 0 < m["is_weight_capped_frac"] < 1  # the example reaches the cap, not everywhere
        with pytest.raises(ValueError, match=r"refusing samples from policy versions \[0\].*"
                                             r"version 2 and train.max_staleness is 1"):
            w.train([samples(3, 0)])
    finally:
        w.shutdown()
