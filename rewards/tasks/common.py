"""What every synthetic task shares: seeded generation with a difficulty knob."""

from __future__ import annotations

import random
from collections.abc import Callable

from rewards.base import RewardResult
from rewards.extract import last_boxed, strip_think


def seeded_generate(task: str, make_problem: Callable[[random.Random, int], dict], n: int,
                    difficulty: int, seed: int) -> list[dict]:
    """``n`` problems from ``make_problem(rng, difficulty)``; the same (n, difficulty, seed)
    always gives the same list, and each row gets an ``id``."""
    if n < 0 or difficulty < 1:
        raise ValueError(f"{task}.generate: need n >= 0 and difficulty >= 1, got {n}, {difficulty}")
    rng = random.Random(f"{task}-{difficulty}-{seed}")
    return [dict(make_problem(rng, difficulty), id=f"{task}-{seed}-{i}") for i in range(n)]


def boxed_answer(response: str, require_think: bool) -> tuple[str | None, RewardResult | None]:
    """The last boxed answer after the thinking section, or the zero-score result saying why
    there is none (no ``</think>`` when it is required, no boxed answer)."""
    body = strip_think(response, require_close=require_think)
    if body is None:
        return None, RewardResult(0.0, False, {"reason": "no </think>"})
    boxed = last_boxed(body)
    if not boxed:
        return None, RewardResult(0.0, False, {"reason": "no boxed answer"})
    return boxed, None
