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
                      log: Callable[[dict], None], start: int = 0, data_state: dict | None = None,
                      save: Callable[[int, dict], None] | None = None) -> None:
    """``learners`` (a LearnerGroup) take warm-up steps ``start + 1 .. cfg.steps`` (SFT on
    prompt + solution + EOS) from a tokenized ``dataset``; each step's metrics go to ``log``
    (names ``warmup/...``). ``data_state`` is the example stream's position after step
    ``start`` (from a checkpoint); ``save(steps_done, data_state)`` is called every
    ``cfg.save_every`` steps and after the last one."""
    if "solution" not in dataset.column_names:
        raise ValueError("warm-up needs a `solution` column in data.warmup (or data.train); "
                         f"columns found: {', '.join(dataset.column_names)} (map one with "
                         "data.train.columns: {solution: NAME})")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream = PromptStream(len(dataset), cfg.batch_size, seed)
    if data_state is not None:
        stream.load_state(data_state)
    for i in tqdm(range(start, cfg.steps), desc="warm-up", unit="step", initial=start,
                  total=cfg.steps):
        rows = dataset.select(stream.next_indices())
        samples = [TrainSample(row["prompt_ids"] + tokenizer(row["solution"], add_special_tokens=False).input_ids
                               + eos,
                               len(row["prompt_ids"])) for row in rows]
        lr = cosine_lr(i, cfg.steps, cfg.lr)
        m = learners.sft_step(samples, lr)
        log({"kind": "warmup", "step": 0, "warmup_step": i + 1, "warmup/lr": lr,
             **{f"warmup/{k}": v for k, v in m.items()}})
        done = i + 1
        if save is not None and (done == cfg.steps or (cfg.save_every and done % cfg.save_every == 0)):
            save(done, stream.state())
