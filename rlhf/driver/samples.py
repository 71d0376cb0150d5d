"""One step's prompts in, train samples out: the batch of prompts with their seeds, how they are
sampled, and completions + rewards -> group advantages -> train samples with the batch metrics.

Shapes: ``N`` responses in a batch, ``G`` responses per prompt (``N = prompts x G``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rewards import RewardResult
from rlhf.config import AdvantageConfig, RewardsConfig, RolloutConfig
from rlhf.driver.data import PromptStream
from rlhf.learner.advantages import group_advantages, informative_groups, overlong_penalty
from rlhf.learner.batching import TrainSample
from rollout.base import Completion, SamplingConfig


@dataclass
class Batch:
    """One step's prompts: dataset indices, task rows (without their token ids), token ids,
    and one sampling seed per prompt."""

    step: int
    indices: list[int]
    tasks: list[dict]
    prompt_ids: list[list[int]]
    seeds: list[int]


def step_seeds(seed: int, step: int, indices: Sequence[int]) -> list[int]:
    """One seed per prompt, fixed by (run seed, step, dataset index): the same prompt draws
    the same samples on whichever worker runs it, and again after a resume."""
    return [((seed * 1_000_003 + step) * 1_000_033 + i) % (2**62) for i in indices]


def next_batch(stream: PromptStream, dataset, step: int, seed: int) -> Batch:
    """The stream's next prompts from a tokenized dataset (rlhf.driver.data)."""
    idx = stream.next_indices()
    tasks = [dict(row) for row in dataset.select(idx)]
    return Batch(step, idx, tasks, [t.pop("prompt_ids") for t in tasks], step_seeds(seed, step, idx))


def train_sampling(ro: RolloutConfig) -> SamplingConfig:
    """How training prompts are sampled (a length window in force lowers ``max_tokens``)."""
    return SamplingConfig(n=ro.samples_per_prompt, temperature=ro.temperature, top_p=ro.top_p,
                          top_k=ro.top_k, min_p=ro.min_p, max_tokens=ro.max_new_tokens,
                          repetition_window=ro.repetition_stop.window,
                          repetition_prob=ro.repetition_stop.prob)


def build_samples(batch: Batch, completions: list[Completion], rewards: list[RewardResult],
                  max_len: int, *, group_size: int, shaping: RewardsConfig,
                  advantages: AdvantageConfig, seed: int) -> tuple[list[TrainSample], dict]:
    """Rewards -> group advantages -> train samples (shuffled by a seeded RNG so that each
    mini-batch mixes groups), plus the batch metrics. ``max_len`` is the step's token budget
    (the overlong penalty's limit); ``shaping`` gives the overlong window; ``advantages`` says
    whether constant groups (dynamic sampling) and truncated samples (overlong filtering) train."""
    G = group_size
    lengths = torch.tensor([len(c.token_ids) for c in completions])  # [N]
    scores = torch.tensor([r.score for r in rewards], dtype=torch.float32)  # [N]
    if shaping.overlong_cache:
        scores = scores + overlong_penalty(lengths, max_len, shaping.overlong_cache)
    adv = group_advantages(scores, G, normalize_std=advantages.normalize_std)  # [N]
    keep_group = informative_groups(scores, G)  # [N/G]
    if not advantages.dynamic_sampling:
        keep_group = torch.ones_like(keep_group)
    samples = []
    for n, c in enumerate(completions):
        if not keep_group[n // G] or (advantages.mask_truncated and c.finish_reason == "length"):
            continue
        prompt = batch.prompt_ids[c.prompt_index]
        samples.append(TrainSample(prompt + c.token_ids, len(prompt), float(adv[n]),
                                   list(c.logprobs), c.policy_version))
    random.Random(f"{seed}-shuffle-{batch.step}").shuffle(samples)
    finish = Counter(c.finish_reason for c in completions)
    correct = [r.correct for r in rewards]
    metrics = {
        "reward/mean": float(scores.mean()), "reward/std": float(scores.std()) if len(scores) > 1 else 0.0,
        "pass_rate": sum(1 for x in correct if x) / max(len(correct), 1),
        "response_len/mean": float(lengths.float().mean()),
        "response_len/p99": percentile(lengths.tolist(), 99),
        "response_len/max": int(lengths.max()),
        # tokens the engines decoded (before a post-hoc repetition cut), for throughput
        "rollout/tokens": sum(c.extra.get("engine_tokens", len(c.token_ids)) for c in completions),
        "groups/informative_frac": float(informative_groups(scores, G).float().mean()),
        "samples/trained": len(samples),
        **{f"finish/{k}": finish.get(k, 0) / len(completions) for k in ("stop", "length", "repetition")},
    }
    return samples, metrics


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100.0))
