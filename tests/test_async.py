"""One-step-off pipelining (train.async_mode=one_step, rlhf/driver/pipeline.py): the recipe
checks, the order of submits, collects, trains and pushes (stand-in roles), the truncated IS
weight of stale samples in closed form, and the learner's staleness accounting."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from rlhf.config import RecipeError, parse_recipe
from rlhf.driver.pipeline import Generated, Pipeline
from rlhf.driver.samples import Batch
from rlhf.learner.losses import behaviour_weight, cispo_loss, ppo_loss
from rollout.base import Completion, SamplingConfig

pytestmark = pytest.mark.unit


def _recipe(**sections):
    return parse_recipe({"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}, **sections})


# ---- recipe ---------------------------------------------------------------------------------
def test_one_step_with_sleeping_colocated_engines_is_refused_with_the_reason():
    with pytest.raises(RecipeError, match=r"async_mode=one_step .*engines sleep .*engine_sleep=false"):
        _recipe(train={"async_mode": "one_step"}, placement={"mode": "colocated"})
    # awake engines on the shared GPU can generate while the learners train
    awake = _recipe(train={"async_mode": "one_step"},
                    placement={"mode": "colocated", "engine_sleep": False})
    assert not awake.placement.engines_sleep and _recipe(placement={"mode": "colocated"}).placement.engines_sleep
    assert not _recipe(placement={"mode": "separate"}).placement.engines_sleep
    with pytest.raises(RecipeError, match=r"needs train.max_staleness >= 1 \(got 0\)"):
        _recipe(train={"async_mode": "one_step", "max_staleness": 0})
    assert _recipe(train={"async_mode": "one_step"}, placement={"mode": "separate"}).train.max_staleness == 1
    assert _recipe(placement={"mode": "colocated"}).train.async_mode == "off"
    assert _recipe(train={"async_mode": False}).train.async_mode == "off"  # YAML's bare `off`


@pytest.mark.parametrize("engine_sleep", [True, False])
def test_colocated_engines_sleep_around_training_only_when_asked(engine_sleep):
    from rlhf.driver.run import Run

    calls = []
    run = object.__new__(Run)
    run.recipe = _recipe(placement={"mode": "colocated", "engine_sleep": engine_sleep})
    run.rollouts = SimpleNamespace(sleep=lambda: calls.append("sleep"), wake_up=lambda: calls.append("wake"))
    with run.engines_asleep() as times:
        calls.append("train")
    assert calls == (["sleep", "train", "wake"] if engine_sleep else ["train"])
    assert set(times) == ({"time/engine_sleep", "time/engine_wake"} if engine_sleep else set())


# ---- the pipeline's order, on stand-in roles --------------------------------------------------
class FakeRollouts:
    """Engines as the pipeline sees them: a batch's prompt ids are ``[[step]]``; each
    completion carries the engine's version at submit time, as a real engine's does."""

    def __init__(self, log):
        self.log, self.version, self.in_flight = log, 0, 0

    def submit(self, prompt_ids, sampling, seeds):
        self.log.append(("submit", prompt_ids[0][0]))
        self.in_flight += 1
        return SimpleNamespace(step=prompt_ids[0][0], version=self.version)

    def collect(self, job):
        self.log.append(("collect", job.step))
        self.in_flight -= 1
        return [Completion(0, [job.step], [-1.0], "stop", policy_version=job.version)]

    def push(self, version):
        assert self.in_flight == 0, "weights pushed while a generate is in flight"
        self.log.append(("push", version))
        self.version = version
        return {"time/weight_sync": 0.0}


def _pipeline(one_step):
    log = []
    rollouts = FakeRollouts(log)
    versions = iter(range(1, 100))
    pipe = Pipeline(rollouts, lambda step: Batch(step, [step], [{}], [[step]], [step]),
                    SamplingConfig, lambda: rollouts.push(next(versions)), one_step)
    return pipe, log


def _loop(pipe, log, steps, start=0):
    """The driver loop's calls, in its order (rlhf/driver/loop.py)."""
    versions = []
    for step in range(start, steps):
        gen = pipe.batch(step)
        versions.append(gen.completions[0].policy_version)
        log.append(("train", step))
        pipe.trained()
    return versions


def test_sync_mode_generates_trains_then_pushes_in_turn():
    pipe, log = _pipeline(one_step=False)
    assert _loop(pipe, log, 3) == [0, 1, 2]  # each batch from the weights it is trained at
    assert log == [("submit", 0), ("collect", 0), ("train", 0), ("push", 1),
                   ("submit", 1), ("collect", 1), ("train", 1), ("push", 2),
                   ("submit", 2), ("collect", 2), ("train", 2), ("push", 3)]


def test_one_step_submits_the_next_batch_before_training_and_pushes_between_batches():
    pipe, log = _pipeline(one_step=True)
    assert _loop(pipe, log, 3) == [0, 0, 1]  # batch n + 1 from version n
    assert log == [("submit", 0), ("collect", 0), ("submit", 1), ("train", 0),
                   ("collect", 1), ("push", 1), ("submit", 2), ("train", 1),
                   ("collect", 2), ("push", 2), ("submit", 3), ("train", 2)]
    pipe.drain()  # before an evaluation or a save: the engines free, with the newest weights
    assert log[-2:] == [("collect", 3), ("push", 3)]


def test_a_drained_batch_survives_a_checkpoint_and_is_trained_on_after_resume():
    pipe, log = _pipeline(one_step=True)
    _loop(pipe, log, 2)
    pipe.drain()
    state = json.loads(json.dumps(pipe.state()))  # as driver.json holds it
    assert state["batch"]["step"] == 2 and state["completions"][0]["policy_version"] == 1
    resumed, log2 = _pipeline(one_step=True)
    resumed.load_state(state)
    gen = resumed.batch(2)
    assert log2 == [("submit", 3)]  # the saved batch is not regenerated
    assert gen.completions == Generated.from_state(state).completions
    assert gen.sampling == SamplingConfig() and isinstance(gen.sampling.stop_token_ids, tuple)
    resumed.drain()  # holds batch 3 now
    with pytest.raises(RuntimeError, match="step 5 got the batch of step 3"):
        resumed.batch(5)  # a checkpoint of another run


# ---- the importance weight of stale samples, closed form ------------------------------------
def _lp(*probs):
    return torch.tensor([[math.log(p) for p in probs]], dtype=torch.float64)


# one stale sample, two tokens: learner now [0.65, 0.225], at the start of the step (pi_old)
# [0.5, 0.25], sampler (pi_rollout) [0.2, 0.5]; A = 1; cap 2
# r = pi / pi_old = [1.3, 0.9]; w = min(pi_old / pi_rollout, 2) = [min(2.5, 2), 0.5] = [2, 0.5]
OLD, ROLLOUT = _lp(0.5, 0.25), _lp(0.2, 0.5)
ONE, MASK = torch.ones(1, dtype=torch.float64), torch.ones(1, 2)


def test_behaviour_weight_is_truncated_on_stale_rows_and_one_on_fresh_rows():
    old, rollout = torch.cat([OLD, OLD]), torch.cat([ROLLOUT, ROLLOUT])
    w = behaviour_weight(old, rollout, torch.tensor([True, False]), cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[2.0, 0.5], [1.0, 1.0]], dtype=torch.float64))
    assert behaviour_weight(old, rollout, torch.tensor([True, True]), cap=3.0)[0, 0] == pytest.approx(2.5)


def test_cispo_with_the_stale_weight_closed_form_value_and_gradient():
    lp = _lp(0.65, 0.225).requires_grad_(True)
    w = behaviour_weight(OLD, ROLLOUT, torch.tensor([True]), cap=2.0)
    loss, m = cispo_loss(lp, OLD, ONE, MASK, eps_low=None, eps_high=5.0, unified_mask=False,
                         weight_cap=None,
                         agg="token-mean", is_weight=w)
    # -(1 / 2) sum_t sg(r_t) w_t A log pi_t
    expected = -(1.3 * 2.0 * math.log(0.65) + 0.9 * 0.5 * math.log(0.225)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert lp.grad[0].tolist() == pytest.approx([-1.3 * 2.0 / 2, -0.9 * 0.5 / 2], rel=1e-9)
    assert m["ratio_mean"].item() == pytest.approx(1.1)  # the ratio is pi / pi_old, not pi_rollout
    # no weight: the synchronous CISPO, unchanged
    plain, _ = cispo_loss(lp, OLD, ONE, MASK, eps_low=None, eps_high=5.0, unified_mask=False, weight_cap=None,
                          agg="token-mean")
    assert plain.item() == pytest.approx(-(1.3 * math.log(0.65) + 0.9 * math.log(0.225)) / 2)


def test_ppo_with_the_stale_weight_keeps_the_trust_region_at_pi_old():
    lp = _lp(0.65, 0.225).requires_grad_(True)
    w = behaviour_weight(OLD, ROLLOUT, torch.tensor([True]), cap=2.0)
    loss, m = ppo_loss(lp, OLD, ONE, MASK, eps_low=0.2, eps_high=0.2, agg="token-mean", is_weight=w)
    # -(1 / 2) sum_t w_t min(r_t A, clip(r_t, 0.8, 1.2) A): token 0 is clipped at 1.2
    assert loss.item() == pytest.approx(-(1.2 * 2.0 + 0.9 * 0.5) / 2, rel=1e-9)
    loss.backward()
    # d/dlogpi of -w r / 2 = -w r / 2; the clipped token gets none
    assert lp.grad[0].tolist() == pytest.approx([0.0, -0.9 * 0.5 / 2], rel=1e-9, abs=1e-12)
    assert m["clip_frac_upper"].item() == pytest.approx(0.5)
