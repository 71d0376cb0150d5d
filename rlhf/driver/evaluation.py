"""Held-out evaluation: every eval prompt sampled ``rollout.eval_samples`` times (once when
greedy), scored by the run's scorer; the pass rate averages over all samples."""

from __future__ import annotations

import time
from typing import Any

from rlhf.config import RolloutConfig
from rlhf.driver.scoring import Scorer
from rollout.base import SamplingConfig


def eval_sampling(ro: RolloutConfig) -> SamplingConfig:
    return SamplingConfig(n=ro.eval_samples if ro.eval_temperature > 0 else 1,
                          temperature=ro.eval_temperature, top_p=ro.eval_top_p,
                          top_k=ro.eval_top_k, min_p=ro.eval_min_p, seed=None,
                          max_tokens=ro.max_new_tokens,
                          repetition_window=ro.repetition_stop.window,
                          repetition_prob=ro.repetition_stop.prob)


def evaluate(rollouts: Any, scorer: Scorer, dataset, sampling: SamplingConfig) -> dict[str, float]:
    """``rollouts`` (a RolloutGroup) answer every row of a tokenized ``dataset``; the metrics."""
    t0 = time.perf_counter()
    rows = [dict(row) for row in dataset]
    prompts = [row.pop("prompt_ids") for row in rows]
    comps = rollouts.generate(prompts, sampling, list(range(len(prompts))))
    results, _ = scorer.score([c.text for c in comps], [rows[c.prompt_index] for c in comps])
    return {"eval/pass_rate": sum(1 for x in results if x.correct) / len(results),
            "eval/reward_mean": sum(x.score for x in results) / len(results),
            "eval/response_len_mean": sum(len(c.token_ids) for c in comps) / len(comps),
            "time/eval": time.perf_counter() - t0}
