"""Line-up puzzles: place N people in a row from clues (in the spirit of SynLogic's puzzles).

``difficulty`` d seats d + 2 people (names A, B, C, ...). Clues are true of a hidden order and
are added until exactly one order satisfies them (checked by brute force, N <= 8). The rule
verifier accepts any order that satisfies every clue (so it needs no answer key beyond the
clues); the reference solver fills seats left to right, checks each clue as soon as its people
are seated, and backtracks, writing each step::

    prompt:   "Five people A, B, C, D, E stand in a row, seats 1 to 5 from the left. Clues: ..."
    solution: "<think>Seat 1: try A. ... clue 2 fails (B must be left of A), backtrack ..."
              "</think>\\boxed{C, A, E, B, D}"

Clue kinds: ``at`` (X is in seat k), ``not_at``, ``left_of`` (X somewhere left of Y),
``next_to``, ``not_next_to``, ``right_after`` (Y directly right of X).
"""

from __future__ import annotations

import random
import re

from rewards.base import BaseVerifier, RewardResult, register_verifier
from rewards.tasks.common import boxed_answer, seeded_generate

NAMES = "ABCDEFGH"
_WORDS = {3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}


def _clue(kind: str, a: str, b: str = "", pos: int = 0) -> dict:
    return {"kind": kind, "a": a, "b": b, "pos": pos}  # one schema for every kind (Arrow-friendly)


def holds(clue: dict, seat: dict[str, int]) -> bool | None:
    """Whether a clue holds for a (partial) seating {name: seat}; None while undecided."""
    k, a, b = clue["kind"], clue["a"], clue["b"]
    if a not in seat or (b and b not in seat):
        return None
    if k == "at":
        return seat[a] == clue["pos"]
    if k == "not_at":
        return seat[a] != clue["pos"]
    if k == "left_of":
        return seat[a] < seat[b]
    if k == "next_to":
        return abs(seat[a] - seat[b]) == 1
    if k == "not_next_to":
        return abs(seat[a] - seat[b]) != 1
    if k == "right_after":
        return seat[b] == seat[a] + 1
    raise ValueError(f"unknown clue kind {k!r}")


def describe(clue: dict) -> str:
    k, a, b, p = clue["kind"], clue["a"], clue["b"], clue["pos"]
    return {"at": f"{a} is in seat {p}.", "not_at": f"{a} is not in seat {p}.",
            "left_of": f"{a} is somewhere to the left of {b}.",
            "next_to": f"{a} stands next to {b}.", "not_next_to": f"{a} does not stand next to {b}.",
            "right_after": f"{b} stands directly to the right of {a}."}[k]


def _random_clue(rng: random.Random, order: list[str]) -> dict:
    seat = {name: i + 1 for i, name in enumerate(order)}
    n = len(order)
    while True:
        kind = rng.choice(["at", "not_at", "left_of", "left_of", "next_to", "not_next_to", "right_after"])
        a, b = rng.sample(order, 2)
        if kind == "at":
            c = _clue(kind, a, pos=seat[a])
        elif kind == "not_at":
            c = _clue(kind, a, pos=rng.choice([p for p in range(1, n + 1) if p != seat[a]]))
        elif kind == "left_of":
            c = _clue(kind, *sorted((a, b), key=seat.get))
        elif kind == "right_after":
            i = rng.randrange(n - 1)
            c = _clue(kind, order[i], order[i + 1])
        else:
            c = _clue(kind, a, b)
        if holds(c, seat):
            return c


def _solutions(names: list[str], clues: list[dict], limit: int = 2) -> list[tuple[str, ...]]:
    """Up to ``limit`` orders satisfying every clue (backtracking, clues checked early)."""
    out: list[tuple[str, ...]] = []
    seat: dict[str, int] = {}

    def place(pos: int) -> None:
        if len(out) >= limit:
            return
        if pos > len(names):
            out.append(tuple(sorted(seat, key=seat.get)))
            return
        for name in names:
            if name not in seat:
                seat[name] = pos
                if all(holds(c, seat) is not False for c in clues):
                    place(pos + 1)
                del seat[name]

    place(1)
    return out


def make_problem(rng: random.Random, difficulty: int) -> dict:
    n = min(8, difficulty + 2)
    names = list(NAMES[:n])
    order = rng.sample(names, n)
    clues: list[dict] = []
    while len(_solutions(names, clues)) > 1:
        clues.append(_random_clue(rng, order))
    # drop clues that are not needed, keeping the solution unique (shorter, harder puzzles)
    for c in list(clues):
        rest = [x for x in clues if x is not c]
        if len(_solutions(names, rest)) == 1:
            clues = rest
    lines = "\n".join(f"{i + 1}. {describe(c)}" for i, c in enumerate(clues))
    prompt = (f"{_WORDS[n]} people {', '.join(names)} stand in a row, seats 1 to {n} from the left. "
              f"Clues:\n{lines}\nWho stands where? Give the names from seat 1 to seat {n} in "
              f"\\boxed{{}}, separated by commas.\n")
    task = {"prompt": prompt, "answer": ", ".join(order), "names": names, "clues": clues,
            "verifier": "logic", "task": "logic", "difficulty": difficulty}
    task["solution"] = solve(task)
    return task


def generate(n: int, difficulty: int = 2, seed: int = 0) -> list[dict]:
    """``n`` seeded puzzles; the same (n, difficulty, seed) always gives the same list."""
    return seeded_generate("logic", make_problem, n, difficulty, seed)


def solve(task: dict) -> str:
    """Reference solver: seat by seat, check clues as soon as they are decided, backtrack."""
    names, clues = list(task["names"]), list(task["clues"])
    trace: list[str] = []
    seat: dict[str, int] = {}

    def place(pos: int) -> bool:
        if pos > len(names):
            return True
        for name in names:
            if name in seat:
                continue
            seat[name] = pos
            broken = next((i for i, c in enumerate(clues) if holds(c, seat) is False), None)
            if broken is not None:
                trace.append(f"Seat {pos}: {name}? No - clue {broken + 1} fails ({describe(clues[broken])})")
                del seat[name]
                continue
            trace.append(f"Seat {pos}: {name}.")
            if place(pos + 1):
                return True
            trace.append(f"Seat {pos}: {name} leads to a dead end, backtrack.")
            del seat[name]
        return False

    place(1)
    order = sorted(seat, key=seat.get)
    trace.append("All clues hold for " + ", ".join(order) + ".")
    return "<think>" + "\n".join(trace) + "</think>\\boxed{" + ", ".join(order) + "}"


_NAME_RE = re.compile(r"[A-Za-z]+")


@register_verifier("logic")
class LogicVerifier(BaseVerifier):
    """1.0 when the boxed order seats every person exactly once and satisfies every clue.
    ``require_think`` (default True): only text after ``</think>`` counts."""

    def __init__(self, require_think: bool = True):
        self.require_think = require_think

    def score(self, response: str, task: dict) -> RewardResult:
        boxed, why_not = boxed_answer(response, self.require_think)
        if boxed is None:
            return why_not
        boxed = re.sub(r"\\text\{([^{}]*)\}", r"\1", boxed)
        order = [w.upper() for w in _NAME_RE.findall(boxed)]
        names = list(task["names"])
        if sorted(order) != sorted(names):
            return RewardResult(0.0, False, {"reason": "not an ordering of the names", "extracted": order[:16]})
        seat = {name: i + 1 for i, name in enumerate(order)}
        broken = [i + 1 for i, c in enumerate(task["clues"]) if not holds(c, seat)]
        ok = not broken
        return RewardResult(float(ok), ok, {"extracted": ", ".join(order),
                                            "reason": "ok" if ok else f"clues broken: {broken}"})
