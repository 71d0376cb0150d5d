"""Rule-based math verifier, registered as ``"math"``.

    >>> from rewards import get_verifier
    >>> v = get_verifier("math")                       # extract="boxed", timeout=3.0
    >>> v(r"... so \\boxed{\\dfrac{1}{2}}", {"answer": "0.5"}).score
    1.0

Pipeline for one response: extract the answer (``rewards.extract``), then
1. fast paths in this process: normalised string match, exact number comparison with
   ``fractions.Fraction`` (no sympy), and an LRU cache of earlier (gold, answer) verdicts;
2. a small bounded parser for common shapes (``rewards.math.fastparse``: expressions, tuples,
   intervals, sets, lists, equations, inequalities, matrices) compared exactly or at fixed
   numeric points, in this process; it declines whatever it does not fully understand;
3. otherwise a symbolic comparison (LaTeX grammar -> sympy, math-verify's comparison rules:
   sets, intervals, tuples, matrices, equations, inequalities, numeric tolerance) in a worker
   process that is killed when it passes the deadline: the result is then "not equivalent" with
   ``info["reason"] == "timeout"``.

Model text is never executed: no ``eval``, and no ``sympify``/``parse_expr`` on text (see
``rewards.math._worker.harden``). A gold answer that cannot be parsed fails closed: score 0,
``correct=None``, ``info["reason"] == "gold_unparseable"``.

Options (``get_verifier("math", **options)``):
    extract: "boxed" (default; last ``\\boxed{}``) | "lenient" (also answer phrases, last math,
        last number, multiple-choice letters)
    require_think_close: only text after ``</think>`` counts (default False)
    timeout: hard wall-clock seconds per symbolic comparison (default 3.0)
    max_workers: threads used by ``batch`` (default: the worker pool size)
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

from rewards.base import BaseVerifier, RewardResult, register_verifier
from rewards.extract import MAX_ANSWER_CHARS, extract_answer, extract_choice, last_boxed
from rewards.math.fastparse import structural_compare
from rewards.math.fastpath import clean, fast_compare, unwrap

__all__ = ["MathVerifier", "math_equal", "extract_gold", "clear_cache"]

_CACHE: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_CACHE_SIZE = 100_000
_CACHE_LOCK = threading.Lock()
_CHOICE_RE = re.compile(r"^\(?([A-J])\)?(?:[.:)]\s.*)?$", re.DOTALL)
_GOLD_SPANS_RE = re.compile(r"\$([^$]+)\$")
_GOLD_JOINER_RE = re.compile(r"^(?:\s|,|;|\band\b|\bor\b)*$")


_RESULTS: OrderedDict[bytes, RewardResult] = OrderedDict()
_RESULTS_SIZE = 50_000


def clear_cache() -> None:
    """Forget all cached verdicts (answer pairs and whole responses)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _RESULTS.clear()


def _cache_get(key: tuple[str, str]) -> tuple[bool, str] | None:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
        return hit


def _cache_put(key: tuple[str, str], value: tuple[bool, str]) -> None:
    with _CACHE_LOCK:
        _CACHE[key] = value
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def math_equal(gold: str, pred: str, timeout: float = 3.0, pool=None) -> tuple[bool, str]:
    """Whether answer ``pred`` equals ``gold``: (equivalent, reason). Never raises, never takes
    much longer than ``timeout`` seconds."""
    key = (gold, pred)
    hit = _cache_get(key)
    if hit is not None:
        return hit
    decision, reason = fast_compare(gold, pred)
    if decision is None:
        decision, reason = structural_compare(gold, pred)
    if decision is None:
        if len(pred) > MAX_ANSWER_CHARS:
            decision, reason = False, "answer_too_long"
        else:
            if pool is None:
                from rewards.math.pool import default_pool

                pool = default_pool()
            decision, reason = pool.compare(unwrap(gold), unwrap(pred), timeout)
    result = (bool(decision), reason)
    _cache_put(key, result)
    return result


def extract_gold(answer) -> str | None:
    """The reference answer from a task's ``answer`` field (a bare answer, ``$...$``, or a full
    worked solution with a boxed or "final answer is" answer)."""
    if answer is None:
        return None
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        return repr(answer) if isinstance(answer, float) else str(answer)
    text = str(answer).strip()
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if len(text) > 200 or "answer" in text.lower():
        return extract_answer(text, "lenient")
    spans = list(_GOLD_SPANS_RE.finditer(text))
    if len(spans) >= 2:  # "$1$ and $2$", "$21,16$ or $11$": one answer listed in parts
        gaps = [text[:spans[0].start()]] + [text[a.end():b.start()] for a, b in zip(spans, spans[1:], strict=False)]
        if all(_GOLD_JOINER_RE.match(g) for g in gaps + [text[spans[-1].end():]]):
            return ", ".join(m.group(1).strip() for m in spans)
    return text


def _choice(s: str) -> str | None:
    m = _CHOICE_RE.match(clean(s))
    return m.group(1) if m else None


@register_verifier("math")
class MathVerifier(BaseVerifier):
    """Scores 1.0 when the response's final answer equals ``task["answer"]``, else 0.0."""

    def __init__(self, extract: str = "boxed", require_think_close: bool = False,
                 timeout: float = 3.0, max_workers: int | None = None):
        if extract not in ("boxed", "lenient"):
            raise ValueError(f"math verifier: extract={extract!r}; valid: 'boxed', 'lenient'")
        if timeout <= 0:
            raise ValueError("math verifier: timeout must be > 0 seconds")
        self.extract, self.require_think_close, self.timeout = extract, require_think_close, timeout
        self.max_workers = max_workers or 0

    def _key(self, response: str, task: dict) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.extract}|{self.require_think_close}|{self.timeout}|".encode())
        h.update(repr(task.get("answer")).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(response.encode("utf-8", "surrogatepass"))
        return h.digest()

    def score(self, response: str, task: dict) -> RewardResult:
        key = self._key(response, task)
        with _CACHE_LOCK:
            hit = _RESULTS.get(key)
        if hit is not None:
            return copy.deepcopy(hit)
        result = self._score(response, task)
        with _CACHE_LOCK:
            _RESULTS[key] = copy.deepcopy(result)
            if len(_RESULTS) > _RESULTS_SIZE:
                _RESULTS.popitem(last=False)
        return result

    def _score(self, response: str, task: dict) -> RewardResult:
        gold = extract_gold(task.get("answer"))
        if gold is None or not clean(gold):
            return RewardResult(0.0, None, {"reason": "gold_unparseable", "gold": task.get("answer")})
        info: dict = {"gold": gold}
        letter = _choice(gold)
        if letter is not None:
            body = response if not self.require_think_close else (
                response[response.rfind("</think>") + 8:] if "</think>" in response else None)
            if body is None:
                pred = None
            elif self.extract == "lenient":
                pred = extract_choice(body)
            else:
                boxed = last_boxed(body)
                pred = _choice(boxed) if boxed is not None else None
            info.update(extracted=pred, reason="choice")
            ok = pred == letter
            return RewardResult(float(ok), ok, info)
        pred = extract_answer(response, self.extract, self.require_think_close)
        if pred is None:
            info["reason"] = "no_answer"
            return RewardResult(0.0, False, info)
        info["extracted"] = pred if len(pred) <= 200 else pred[:200] + "..."
        ok, reason = math_equal(gold, pred, self.timeout)
        info["reason"] = reason
        if reason == "gold_unparseable":
            return RewardResult(0.0, None, info)
        return RewardResult(float(ok), ok, info)

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        """Score many; identical (response, answer) pairs are scored once, the rest concurrently
        (threads waiting on worker processes)."""
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        if not self.max_workers:
            from rewards.math.pool import pool_size

            self.max_workers = pool_size()
        keys = [self._key(r, t) for r, t in zip(responses, tasks, strict=True)]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = list(first.values())
        if self.max_workers <= 1 or len(unique) <= 1:
            done = {keys[i]: self(responses[i], tasks[i]) for i in unique}
        else:
            with cf.ThreadPoolExecutor(self.max_workers) as ex:
                outs = ex.map(lambda i: self(responses[i], tasks[i]), unique)
                done = {keys[i]: out for i, out in zip(unique, outs, strict=True)}
        return [done[k] if first[k] == i else copy.deepcopy(done[k]) for i, k in enumerate(keys)]
