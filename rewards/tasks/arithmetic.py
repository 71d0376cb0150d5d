"""Multi-step integer arithmetic with worked steps.

Difficulty: 1 and 2 are one and two additions/subtractions of single digits; 3 adds
multiplication; 4 uses three operations on numbers up to 20; from 5 on, ``difficulty - 1``
operations on numbers up to 99. The reference solution rewrites the expression one operation at a time (products
first, then left to right), so a model warmed up on it learns a chain of short steps::

    prompt:   "Compute 12+7*3.\\n"
    solution: "<think>12+7*3\\n=12+21\\n=33</think>\\boxed{33}"

The verifier reads the last ``\\boxed{...}`` and compares integers exactly.
"""

from __future__ import annotations

import random
import re

from rewards.base import BaseVerifier, RewardResult, register_verifier
from rewards.tasks.common import boxed_answer, seeded_generate

PROMPT = "Compute {expr}.\n"
_INT = re.compile(r"-?\d+")


def _steps(nums: list[int], ops: list[str]) -> list[str]:
    """The expression after each single operation, products first, then left to right."""
    nums, ops = list(nums), list(ops)
    lines = [_render(nums, ops)]
    while ops:
        i = ops.index("*") if "*" in ops else 0
        a, b, op = nums[i], nums[i + 1], ops[i]
        nums[i:i + 2] = [a * b if op == "*" else a + b if op == "+" else a - b]
        del ops[i]
        lines.append(_render(nums, ops))
    return lines


def _render(nums: list[int], ops: list[str]) -> str:
    out = str(nums[0])
    for op, n in zip(ops, nums[1:]):
        out += f"{op}{n}" if n >= 0 else f"{op}({n})"
    return out


def make_problem(rng: random.Random, difficulty: int) -> dict:
    n_ops = {1: 1, 2: 2, 3: 2, 4: 3}.get(difficulty, difficulty - 1)
    hi = 9 if difficulty <= 3 else 20 if difficulty == 4 else 99
    symbols = "+-" if difficulty <= 2 else "+-*"
    nums = [rng.randint(1, hi) for _ in range(n_ops + 1)]
    ops = [rng.choice(symbols) for _ in range(n_ops)]
    lines = _steps(nums, ops)
    answer = lines[-1]
    expr = lines[0]
    solution = "<think>" + "\n=".join(lines) + "</think>\\boxed{" + answer + "}"
    return {"prompt": PROMPT.format(expr=expr), "answer": answer, "solution": solution,
            "verifier": "arithmetic", "task": "arithmetic", "difficulty": difficulty}


def generate(n: int, difficulty: int = 2, seed: int = 0) -> list[dict]:
    """``n`` seeded problems; the same (n, difficulty, seed) always gives the same list."""
    return seeded_generate("arithmetic", make_problem, n, difficulty, seed)


def solve(task: dict) -> str:
    """Reference solver: the worked solution for a task's prompt."""
    expr = task["prompt"].removeprefix("Compute ").rstrip().removesuffix(".")
    tokens = re.findall(r"\(-\d+\)|\d+|[+\-*]", expr)
    nums = [int(t.strip("()")) for t in tokens[0::2]]
    ops = tokens[1::2]
    lines = _steps(nums, ops)
    return "<think>" + "\n=".join(lines) + "</think>\\boxed{" + lines[-1] + "}"


@register_verifier("arithmetic")
class ArithmeticVerifier(BaseVerifier):
    """Exact integer match of the last boxed answer. ``require_think`` (default True) gives 0
    unless the thinking section was closed before the answer."""

    def __init__(self, require_think: bool = True):
        self.require_think = require_think

    def score(self, response: str, task: dict) -> RewardResult:
        got, why_not = boxed_answer(response, self.require_think)
        if got is None:
            return why_not
        got = got.strip()
        if not _INT.fullmatch(got):
            return RewardResult(0.0, False, {"reason": "not an integer", "extracted": got[:64]})
        ok = int(got) == int(task["answer"])
        return RewardResult(float(ok), ok, {"extracted": got})
