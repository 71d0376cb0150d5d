"""Countdown: reach a target from given numbers with + - * / (each number at most once).

``difficulty`` d uses d + 2 numbers; the target is the value of a random expression over a
random subset of them, so every problem is solvable. The reference solver is a depth-first
search that combines two numbers at a time and writes every attempt and every backtrack, so
its traces grow with difficulty::

    prompt:   "Using the numbers 3, 7, 25 (each at most once) and + - * /, make 46. ..."
    solution: "<think>Numbers: 3, 7, 25. Target: 46.\\n[3, 7, 25] try 3+7=10 -> [10, 25]\\n..."
              "</think>\\boxed{(3*7)+25}"

The verifier parses the boxed expression with a small recursive-descent parser (numbers,
+ - * / and parentheses; never ``eval``), evaluates it exactly with ``Fraction``, and checks the
numbers used form a sub-multiset of the given ones.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

from rewards.base import BaseVerifier, RewardResult, register_verifier
from rewards.tasks.common import boxed_answer, seeded_generate

PROMPT = ("Using the numbers {nums} (each at most once) and + - * /, make {target}. "
          "Show your reasoning, then give the expression in \\boxed{{}}.\n")
MAX_EXPR_CHARS = 300
MAX_TRACE_LINES = 600


# -- safe expression evaluation -----------------------------------------------------------

class ExprError(ValueError):
    pass


_TOKEN_RE = re.compile(r"\s*(\d+|[-+*/()×÷x·])")


def _tokens(expr: str) -> list[str]:
    expr = expr.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/")
    expr = expr.replace("\\left", "").replace("\\right", "").replace("{", "(").replace("}", ")")
    pos, out = 0, []
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m:
            if expr[pos:].strip() == "":
                break
            raise ExprError(f"unexpected {expr[pos:pos + 10]!r}")
        tok = m.group(1)
        out.append({"×": "*", "x": "*", "·": "*", "÷": "/"}.get(tok, tok))
        pos = m.end()
    return out


def evaluate(expr: str) -> tuple[Fraction, list[int]]:
    """(exact value, numbers used) of an arithmetic expression; raises ExprError."""
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError("expression too long")
    toks = _tokens(expr)
    used: list[int] = []
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise ExprError("unexpected end")
        pos += 1
        return toks[pos - 1]

    def expr_(depth: int) -> Fraction:
        if depth > 50:
            raise ExprError("nested too deeply")
        value = term(depth)
        while peek() in ("+", "-"):
            op = take()
            rhs = term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(depth: int) -> Fraction:
        value = factor(depth)
        while peek() in ("*", "/"):
            op = take()
            rhs = factor(depth)
            if op == "/":
                if rhs == 0:
                    raise ExprError("division by zero")
                value /= rhs
            else:
                value *= rhs
        return value

    def factor(depth: int) -> Fraction:
        tok = take()
        if tok == "(":
            value = expr_(depth + 1)
            if take() != ")":
                raise ExprError("missing )")
            return value
        if tok.isdigit():
            used.append(int(tok))
            return Fraction(int(tok))
        raise ExprError(f"unexpected {tok!r}")  # unary minus is not a Countdown move

    value = expr_(0)
    if pos != len(toks):
        raise ExprError(f"unexpected {toks[pos]!r}")
    return value, used


# -- generator ----------------------------------------------------------------------------

_OPS = "+-*/"


def _random_target(rng: random.Random, nums: list[int]) -> tuple[int, str]:
    """Combine a random subset (>= 2 numbers) into a positive integer; (value, expression)."""
    while True:
        k = rng.randint(2, len(nums))
        items = [(Fraction(n), str(n)) for n in rng.sample(nums, k)]
        while len(items) > 1:
            a, b = items.pop(rng.randrange(len(items))), items.pop(rng.randrange(len(items)))
            op = rng.choice(_OPS)
            if op == "-" and a[0] < b[0]:
                a, b = b, a
            if op == "/" and (b[0] == 0 or (a[0] / b[0]).denominator != 1):
                op = "+"
            val = {"+": a[0] + b[0], "-": a[0] - b[0], "*": a[0] * b[0], "/": a[0] / b[0] if b[0] else 0}[op]
            items.append((val, f"({a[1]}{op}{b[1]})"))
        value, text = items[0]
        if value.denominator == 1 and 0 < value <= 10_000 and value not in nums:
            return int(value), text[1:-1] if text.startswith("(") else text


def make_problem(rng: random.Random, difficulty: int) -> dict:
    count = difficulty + 2
    nums = [rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 50, 75, 100][: 10 + min(4, difficulty)])
            for _ in range(count)]
    target, construction = _random_target(rng, nums)
    task = {"prompt": PROMPT.format(nums=", ".join(map(str, nums)), target=target),
            "answer": str(target), "numbers": nums, "target": target, "construction": construction,
            "verifier": "countdown", "task": "countdown", "difficulty": difficulty}
    task["solution"] = solve(task)
    return task


def generate(n: int, difficulty: int = 2, seed: int = 0) -> list[dict]:
    """``n`` seeded problems; the same (n, difficulty, seed) always gives the same list."""
    return seeded_generate("countdown", make_problem, n, difficulty, seed)


# -- reference solver -----------------------------------------------------------------------

MAX_NODES = 100_000


def _search(items: list[tuple[Fraction, str]], target: int, depth: int, trace: list[str],
            seen: set[tuple[Fraction, ...]]) -> str | None:
    indent = "  " * depth
    if len(seen) >= MAX_NODES:
        return None
    for val, text in items:
        if val == target:
            return text
    if len(items) < 2:
        return None
    key = tuple(sorted(v for v, _ in items))
    if key in seen:
        return None
    seen.add(key)
    values = "[" + ", ".join(str(v) for v, _ in items) + "]"
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            (a, ta), (b, tb) = items[i], items[j]
            for op in _OPS:
                if op in "+*" and i > j:
                    continue  # commutative: try each pair once
                if op == "-" and a <= b or op == "/" and (b == 0 or (a / b).denominator != 1 or b == 1):
                    continue
                val = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
                rest = [items[k] for k in range(len(items)) if k not in (i, j)] + [(val, f"({ta}{op}{tb})")]
                if len(trace) < MAX_TRACE_LINES:
                    trace.append(f"{indent}{values} try {a}{op}{b}={val} -> "
                                 "[" + ", ".join(str(v) for v, _ in rest) + "]")
                found = _search(rest, target, depth + 1, trace, seen)
                if found is not None:
                    return found
                if len(trace) < MAX_TRACE_LINES and len(rest) == 1:
                    trace.append(f"{indent}  {val} != {target}, backtrack")
    if len(trace) < MAX_TRACE_LINES:
        trace.append(f"{indent}{values} dead end, backtrack")
    return None


def solve(task: dict) -> str:
    """Reference solver: a depth-first search trace with backtracking, then the boxed answer."""
    nums, target = list(task["numbers"]), int(task["target"])
    trace = [f"Numbers: {', '.join(map(str, nums))}. Target: {target}."]
    found = _search([(Fraction(n), str(n)) for n in nums], target, 0, trace, set())
    if len(trace) >= MAX_TRACE_LINES:
        trace.append("... (search trace shortened)")
    if found is None and task.get("construction"):
        trace.append(f"Search budget spent; the construction {task['construction']} = {target}.")
        found = task["construction"]
    if found is None:
        return "<think>" + "\n".join(trace) + "\nNo expression reaches the target.</think>\\boxed{}"
    expr = found[1:-1] if found.startswith("(") and found.endswith(")") else found
    trace.append(f"Found: {expr} = {target}.")
    return "<think>" + "\n".join(trace) + "</think>\\boxed{" + expr + "}"


# -- verifier ---------------------------------------------------------------------------------

@register_verifier("countdown")
class CountdownVerifier(BaseVerifier):
    """1.0 when the boxed expression uses only the given numbers (each at most once) and equals
    the target exactly. ``require_think`` (default True): only text after ``</think>`` counts."""

    def __init__(self, require_think: bool = True):
        self.require_think = require_think

    def score(self, response: str, task: dict) -> RewardResult:
        expr, why_not = boxed_answer(response, self.require_think)
        if expr is None:
            return why_not
        expr = expr.split("=")[0]  # "3*7+25 = 46" -> the left side
        try:
            value, used = evaluate(expr)
        except ExprError as exc:
            return RewardResult(0.0, False, {"reason": f"unparseable: {exc}", "extracted": expr[:80]})
        extra = Counter(used) - Counter(int(n) for n in task["numbers"])
        if extra:
            return RewardResult(0.0, False, {"reason": f"numbers not available: {sorted(extra.elements())}",
                                             "extracted": expr[:80]})
        ok = value == int(task["target"])
        return RewardResult(float(ok), ok, {"extracted": expr[:80], "value": str(value),
                                            "reason": "ok" if ok else "wrong value"})
