"""Supervised warm-up before RL: ``warmup.steps`` steps of maximum likelihood on the data's
reference ``solution`` column, with a cosine learning-rate decay."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from rlhf.config import WarmupConfig
from rlhf.driver.data import PromptStream
from rlhf.learner.batching import TrainSample


def cosine_lr(step: int, total: int, peak: float, floor: float = 0.1) -> float:
    """Warm-up learning rate: cosine from ``peak`` to ``floor * peak``."""
    frac = step / max(total - 1, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def supervised_warmup(learners: Any, cfg: WarmupConfig, dataset, tokenizer, seed: int,
                      log: Callable[[dict], None]) -> None:
    """``learners`` (a LearnerGroup) take ``cfg.steps`` SFT steps on prompt + solution + EOS
    from a tokenized ``dataset``; each step's metrics go to ``log``."""
    if "solution" not in dataset.column_names:
        raise ValueError("warm-up needs a `solution` column in data.warmup (or data.train)")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream = PromptStream(len(dataset), cfg.batch_size, seed)
    for i in tqdm(range(cfg.steps), desc="warm-up", unit="step"):
        rows = dataset.select(stream.next_indices())
        samples = [TrainSample(row["prompt_ids"] + tokenizer(row["solution"]).input_ids + eos,
                               len(row["prompt_ids"])) for row in rows]
        m = learners.sft_step(samples, cosine_lr(i, cfg.steps, cfg.lr))
        log({"kind": "warmup", "step": 0, "warmup_step": i + 1, **m})
