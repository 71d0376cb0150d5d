"""Completions + rewards -> train samples and batch metrics (rlhf/driver/samples.py), and the
scorer's count of samples no verifier could judge (rlhf/driver/scoring.py)."""

import math

import pytest

from rewards import RewardResult
from rlhf.config import AdvantageConfig, RewardsConfig, VerifierSpec
from rlhf.driver.samples import Batch, build_samples, step_seeds
from rlhf.driver.scoring import Scorer, VerifierErrors, unjudged
from rollout.base import Completion

pytestmark = pytest.mark.unit


def test_seeds_follow_the_dataset_index_not_the_position():
    a = step_seeds(3, 5, [10, 11, 12])
    assert step_seeds(3, 5, [12, 10]) == [a[2], a[0]]  # another worker, another order: same seeds
    assert len(set(a)) == 3 and step_seeds(3, 6, [10]) != a[:1] and step_seeds(4, 5, [10]) != a[:1]


def _batch():
    comps = [Completion(0, [7, 8], [-0.1, -0.2], "stop", policy_version=2),
             Completion(0, [9], [-0.3], "length", policy_version=2, extra={"engine_tokens": 4}),
             Completion(1, [5, 5, 5], [-0.4] * 3, "repetition", policy_version=2),
             Completion(1, [6], [-0.5], "stop", policy_version=2)]
    batch = Batch(step=4, indices=[20, 21], tasks=[{}, {}], prompt_ids=[[1, 2], [3]],
                  seeds=[0, 0])
    rewards = [RewardResult(1.0, True), RewardResult(0.0, False), RewardResult(1.0, True),
               RewardResult(1.0, True)]
    return batch, comps, rewards


def _build(dynamic_sampling=False, overlong=0, seed=0, step=None, mask_truncated=False):
    batch, comps, rewards = _batch()
    if step is not None:
        batch.step = step
    return build_samples(batch, comps, rewards, 3, group_size=2,
                         shaping=RewardsConfig(overlong_cache=overlong),
                         advantages=AdvantageConfig(dynamic_sampling=dynamic_sampling,
                                                     mask_truncated=mask_truncated), seed=seed)


def test_samples_carry_ids_advantages_and_versions_and_metrics_count_the_batch():
    samples, m = _build()
    by_ids = {tuple(s.input_ids): s for s in samples}
    assert set(by_ids) == {(1, 2, 7, 8), (1, 2, 9), (3, 5, 5, 5), (3, 6)}
    s = by_ids[(1, 2, 7, 8)]
    assert s.prompt_len == 2 and s.rollout_logprobs == [-0.1, -0.2] and s.policy_version == 2
    adv = 0.5 / (math.sqrt(0.5) + 1e-6)  # group [1, 0]: centred +-0.5 over the unbiased std
    assert s.advantage == pytest.approx(adv) and by_ids[(1, 2, 9)].advantage == pytest.approx(-adv)
    assert by_ids[(3, 6)].advantage == 0.0  # group [1, 1]: no signal
    assert m["reward/mean"] == 0.75 and m["pass_rate"] == 0.75 and m["samples/trained"] == 4
    assert m["groups/informative_frac"] == 0.5 and m["response_len/max"] == 3
    assert m["rollout/tokens"] == 2 + 4 + 3 + 1  # what the engines decoded, before a cut
    assert (m["finish/stop"], m["finish/length"], m["finish/repetition"]) == (0.5, 0.25, 0.25)


def test_dynamic_sampling_overlong_penalty_and_a_seeded_shuffle():
    samples, _ = _build(dynamic_sampling=True)
    assert sorted(len(s.input_ids) for s in samples) == [3, 4]  # the constant group is dropped
    _, m = _build(overlong=2)  # budget 3, window 2: lengths 2, 1, 3, 1 -> penalties -0.5, 0, -1, 0
    assert m["reward/mean"] == pytest.approx((0.5 + 0.0 + 0.0 + 1.0) / 4)
    order = [s.input_ids for s in _build(seed=1)[0]]
    assert order == [s.input_ids for s in _build(seed=1)[0]]  # the same (seed, step): same order
    others = {tuple(map(tuple, (s.input_ids for s in _build(seed=k, step=st)[0])))
              for k in range(4) for st in range(4)}
    assert len(others) > 1


def test_overlong_filtering_drops_truncated_samples_but_keeps_their_reward_in_the_baseline():
    samples, m = _build(mask_truncated=True)
    by_ids = {tuple(s.input_ids): s for s in samples}
    assert set(by_ids) == {(1, 2, 7, 8), (3, 5, 5, 5), (3, 6)}  # the `length` sample is out
    assert by_ids[(1, 2, 7, 8)].advantage == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-6))
    assert m["samples/trained"] == 3 and m["reward/mean"] == 0.75


def test_unjudged_samples_are_counted_by_the_scorer():
    error = RewardResult(0.0, None, {"error": "timeout"})
    routed_error = RewardResult(0.1, None, {"parts": {
        "math": {"score": 0.0, "correct": None, "weight": 1.0, "info": {"error": "worker died"}},
        "format": {"score": 1.0, "correct": True, "weight": 0.1, "info": {}}}})
    assert unjudged(error) and unjudged(routed_error)
    assert not unjudged(RewardResult(0.0, False, {"reason": "wrong"}))
    assert not unjudged(RewardResult(0.0, None, {"digits": 0}))  # no verdict, but no error
    scorer = Scorer(RewardsConfig(verifiers=[VerifierSpec(name="tests.plugins:digit_count")]))
    _, m = scorer.score(["12", "ab"], [{}, {}])
    assert m["verifier/errors"] == 0
    scorer = Scorer(RewardsConfig(max_error_rate=1.0, verifiers=[  # routed: a task whose route
        VerifierSpec(name="tests.plugins:digit_count", when="digits"),  # matches no verifier
        VerifierSpec(name="tests.plugins:broken", when="broken")]))
    results, m = scorer.score(["1", "2", "3"], [{"verifier": "digits"}, {"verifier": "broken"},
                                                {"verifier": "poetry"}])
    assert [r.score for r in results] == [1.0, 0.0, 0.0]
    assert m["verifier/errors"] == 2


def test_too_many_unjudged_samples_stop_the_step_with_the_reason():
    specs = [VerifierSpec(name="tests.plugins:digit_count", when="digits"),
             VerifierSpec(name="tests.plugins:broken", when="broken")]
    tasks = [{"verifier": "digits"}] * 4 + [{"verifier": "broken"}]
    scorer = Scorer(RewardsConfig(verifiers=specs))  # default threshold 0.2: 1 of 5 is allowed
    _, m = scorer.score(["1"] * 5, tasks)
    assert m["verifier/errors"] == 1
    with pytest.raises(VerifierErrors, match=r"2 of 5 samples could not be judged \(more than "
                       r"rewards.max_error_rate=0.2\); the verifiers said: tests.plugins:broken: "
                       r"RuntimeError: verifier backend down"):
        scorer.score(["1"] * 5, tasks[1:] + [{"verifier": "broken"}])
