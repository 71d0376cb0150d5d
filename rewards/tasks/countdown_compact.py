"""Countdown with a compact search trace: the problems and the verifier of ``countdown``, with a
short prompt and one short line per attempt, so that a tiny model on CPU can sample whole
traces (median ~100 characters at difficulty 1, i.e. 3 numbers) and RL has many branch points
to act on: after every failed attempt (``x``) the next line is a choice of pair and operator::

    prompt:   "Make 5 from 1 3 8 (+-*/, each once).\\n"
    solution: "<think>1+3=4\\n 8+4=12 x\\n 8-4=4 x\\n 8*4=32 x\\n 8/4=2 x\\n1*3=3\\n 8+3=11 x\\n"
              " 8-3=5 !</think>\\boxed{8-(1*3)}"

Scored by the ``countdown`` verifier (the boxed expression must use only the given numbers,
each at most once, and equal the target exactly).
"""

from __future__ import annotations

import random
from fractions import Fraction

from rewards.tasks import countdown
from rewards.tasks.common import seeded_generate

PROMPT = "Make {target} from {nums} (+-*/, each once).\n"
MAX_LINES = 200


def _search(items: list[tuple[Fraction, str]], target: int, depth: int, lines: list[str]) -> str | None:
    for val, text in items:
        if val == target:
            return text
    if len(items) < 2 or len(lines) >= MAX_LINES:
        return None
    for i in range(len(items)):
        for j in range(len(items)):
            (a, ta), (b, tb) = items[i], items[j]
            if i == j:
                continue
            for op in countdown._OPS:
                if (op in "+*" and i > j) or (op == "-" and a <= b) or (
                        op == "/" and (b in (0, 1) or (a / b).denominator != 1)):
                    continue
                val = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
                rest = [items[k] for k in range(len(items)) if k not in (i, j)] + [(val, f"({ta}{op}{tb})")]
                mark = " !" if val == target else (" x" if len(rest) == 1 else "")
                lines.append(f"{' ' * depth}{a}{op}{b}={val}{mark}")
                found = _search(rest, target, depth + 1, lines)
                if found is not None:
                    return found
    return None


def solve(task: dict) -> str:
    nums, target = list(task["numbers"]), int(task["target"])
    lines: list[str] = []
    found = _search([(Fraction(n), str(n)) for n in nums], target, 0, lines)
    if found is None:  # search budget spent: the construction (already without outer parens)
        expr = task["construction"]
        lines.append(f"= {expr}")
    else:  # the search wraps every combination in parentheses
        expr = found[1:-1] if found.startswith("(") and found.endswith(")") else found
    return "<think>" + "\n".join(lines) + "</think>\\boxed{" + expr + "}"


def make_problem(rng: random.Random, difficulty: int) -> dict:
    task = countdown.make_problem(rng, difficulty)
    task["prompt"] = PROMPT.format(nums=" ".join(map(str, task["numbers"])), target=task["target"])
    task["task"] = "countdown_compact"
    task["solution"] = solve(task)
    return task


def generate(n: int, difficulty: int = 1, seed: int = 0) -> list[dict]:
    """``n`` seeded problems; the same (n, difficulty, seed) always gives the same list."""
    return seeded_generate("countdown_compact", make_problem, n, difficulty, seed)
