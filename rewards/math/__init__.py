"""Rule-based math verifier, registered as ``"math"``.

    >>> from rewards import get_verifier
    >>> v = get_verifier("math")                       # extract="boxed", timeout=3.0
    >>> v(r"... so \\boxed{\\dfrac{1}{2}}", {"answer": "0.5"}).score
    1.0

Pipeline for one response: extract the answer (``rewards.extract``), then
1. fast paths in this process: normalised string match, exact number comparison with
   ``fractions.Fraction`` (no sympy), in-process refusals (unbalanced braces, Python-shaped
   text, non-ASCII digits), and an LRU cache of earlier (gold, answer) verdicts;
2. a small bounded parser for common shapes (``rewards.math.fastparse``: expressions, tuples,
   intervals, sets, lists, equations, inequalities, matrices) compared exactly or at fixed
   numeric points, in this process; it declines whatever it does not fully understand;
3. otherwise a symbolic comparison (LaTeX grammar -> sympy, math-verify's comparison rules:
   sets, intervals, tuples, matrices, equations, inequalities, numeric tolerance, then an
   exactness audit of its "equal") in a worker process with a soft and a hard deadline.

Threat model. Responses come from the policy under training, an optimiser for this score: they
are hostile input, and the gold answer is trusted dataset text. Defended:

- execution: model text is never executed and never reaches ``eval``/``sympify``/``parse_expr``
  (``_worker.harden`` patches the libraries' string paths, pinned to the versions it is written
  for, and fails closed when a patch target is missing); Python-shaped answers are judged
  "not equal" without a worker (``info["reason"] == "code_shaped"``);
- false positives: numeric closeness never decides equality (fastparse's error and influence
  bounds; decimals count as far as their digits; the worker audits math-verify's chopping
  comparison), so ``\\sqrt[10^{100}]{2}`` is not ``1``; unbalanced text is no answer; hedges
  ("1 or 2", two boxes joined by "or") are lists and never equal a single gold; lenient
  extraction takes answers only from answer-shaped text (see ``rewards.extract``);
- time and memory: extraction and fast paths are linear; the in-process parser reads at most
  400 characters and spends at most 20,000 node evaluations or 0.1 s per comparison (measured
  worst case about 45 ms on this 2-core VM); answers over 2,000 characters are refused; the
  worker has 2 GiB of address space, a soft deadline at 80% of ``timeout`` and a SIGKILL at
  ``timeout`` (3 s by default): a check never takes longer than ``timeout`` once a worker is up;
- silent zeros: a result is cached only when it is a verdict about the answer. A timeout or a
  memory limit scores 0 with ``correct=None`` and ``info["reason"]`` ("timeout",
  "soft_timeout", "memory"), not cached; a backend failure (worker died or failed to start,
  math-verify missing, hardening refused) is *unjudged* (``correct=None``, ``info["error"]``),
  never cached, counted by the run as a verifier error. ``preflight()`` checks the pinned
  versions and that a worker answers a known pair; a gold answer that cannot be parsed fails
  closed (score 0, ``correct=None``, ``info["reason"] == "gold_unparseable"``).

Not defended: an answer that is mathematically equal to the gold by a route the parsers do not
know is scored 0 (false negatives are possible; false positives are what this guards);
math-verify's own rules for sets and relations (the audit checks numbers, tuples, intervals and
matrices); a policy that spends every check's full deadline slows scoring by at most
``timeout`` per distinct answer (identical answers are scored once).

Options (``get_verifier("math", **options)``):
    extract: "boxed" (default; last ``\\boxed{}``) | "lenient" (also answer phrases, whole-
        response answers, final math, the final sentence's number, multiple-choice letters)
    require_think_close: only text after ``</think>`` counts (default False)
    timeout: hard wall-clock seconds per symbolic comparison (default 3.0)
    max_workers: threads used by ``batch`` (default: the pool size)
    workers: None (default: the shared worker pool, leased) or the size of a pool of its own

Lifecycle: ``close()`` stops an own pool or gives the lease on the shared one back (the last
lease back stops the shared pool); ``preflight()`` raises ``VerifierUnavailable``.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from rewards.base import (
    BaseVerifier,
    RewardResult,
    VerifierUnavailable,
    is_unjudged,
    register_verifier,
)
from rewards.extract import (
    MAX_ANSWER_CHARS,
    extract_answer,
    extract_choice,
    last_boxed,
    looks_like_code,
    strip_think,
)
from rewards.math._worker import backend_problems
from rewards.math.fastparse import structural_compare
from rewards.math.fastpath import clean, fast_compare, unwrap
from rewards.math.pool import (
    WorkerPool,
    default_pool,
    lease_default_pool,
    pool_size,
    release_default_pool,
)

__all__ = ["MathVerifier", "math_equal", "extract_gold", "clear_cache", "is_verdict"]

_CACHE: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_CACHE_SIZE = 100_000
_CACHE_LOCK = threading.Lock()
_CHOICE_RE = re.compile(r"^\(?([A-J])\)?(?:[.:)]\s.*)?$", re.DOTALL)
_GOLD_SPANS_RE = re.compile(r"\$([^$]+)\$")
_GOLD_JOINER_RE = re.compile(r"^(?:\s|,|;|\band\b|\bor\b)*$")
# the worker pair preflight() asks for: needs the grammar and sympy, known equal
PREFLIGHT_PAIR = ("\\tan^2(y)+1", "\\sec^2(y)")
# reasons of results that are not verdicts about the answer (never cached)
TRANSIENT_REASONS = ("timeout", "soft_timeout", "memory")


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


def _judge(gold: str, pred: str, timeout: float, get_pool: Callable[[], WorkerPool]) -> tuple[bool | None, str]:
    key = (gold, pred)
    hit = _cache_get(key)
    if hit is not None:
        return hit
    if len(pred) > MAX_ANSWER_CHARS and pred != gold:
        decision, reason = False, "answer_too_long"  # before any parsing: every path stays short
    else:
        decision, reason = fast_compare(gold, pred)
    if decision is None and looks_like_code(pred) and not looks_like_code(gold):
        decision, reason = False, "code_shaped"  # Python/path text is no math answer
    if decision is None:
        decision, reason = structural_compare(gold, pred)
    if decision is None:
        decision, reason = get_pool().compare(unwrap(gold), unwrap(pred), timeout)
    if decision is None:
        return None, reason  # no judgement (timeout, dead worker, backend missing): never cached
    _cache_put(key, (bool(decision), reason))
    return bool(decision), reason


def math_equal(gold: str, pred: str, timeout: float = 3.0, pool: WorkerPool | None = None) -> tuple[bool | None, str]:
    """Whether answer ``pred`` equals ``gold``: (equivalent, reason); equivalent is None when no
    judgement was reached (``reason``: "timeout", "soft_timeout", "memory", "error: ..."). Never
    raises, never takes much longer than ``timeout`` seconds once a worker is up."""
    return _judge(gold, pred, timeout, (lambda: pool) if pool is not None else default_pool)


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
    """Scores 1.0 when the response's final answer equals ``task["answer"]``, else 0.0.

    ``workers``: None (default) uses the process-wide worker pool, leased and given back by
    ``close()`` (the last lease back stops it); a number gives this verifier its own pool of that
    many workers, stopped by ``close()``.
    """

    def __init__(self, extract: str = "boxed", require_think_close: bool = False,
                 timeout: float = 3.0, max_workers: int | None = None, workers: int | None = None):
        if extract not in ("boxed", "lenient"):
            raise ValueError(f"math verifier: extract={extract!r}; valid: 'boxed', 'lenient'")
        if timeout <= 0:
            raise ValueError("math verifier: timeout must be > 0 seconds")
        if workers is not None and workers < 1:
            raise ValueError("math verifier: workers must be >= 1 (or None for the shared pool)")
        self.extract, self.require_think_close, self.timeout = extract, require_think_close, timeout
        self.max_workers = max_workers or 0
        self.workers = workers
        self._own: WorkerPool | None = None
        self._leased = False
        self._pool_lock = threading.Lock()

    # -- worker pool lifecycle
    def _pool(self) -> WorkerPool:
        with self._pool_lock:
            if self.workers is not None:
                if self._own is None or self._own.closed:
                    self._own = WorkerPool(size=self.workers)
                return self._own
            if not self._leased:
                lease_default_pool()
                self._leased = True
        return default_pool()

    def close(self) -> None:
        """Stop this verifier's own pool, or give its lease on the shared one back (idempotent)."""
        with self._pool_lock:
            own, self._own = self._own, None
            leased, self._leased = self._leased, False
        if own is not None:
            own.close()
        if leased:
            release_default_pool()

    def preflight(self) -> None:
        """Raise :class:`VerifierUnavailable` unless math-verify and latex2sympy2_extended are
        installed at the pinned versions and a worker starts and confirms a known-equal pair
        within ``timeout`` seconds (plus the pool's start allowance)."""
        problems = backend_problems()
        if problems:
            raise VerifierUnavailable("math verifier: " + "; ".join(problems))
        ok, reason = self._pool().compare(*PREFLIGHT_PAIR, self.timeout)
        if ok is not True:
            raise VerifierUnavailable(
                f"math verifier: a worker did not confirm the known-equal pair {PREFLIGHT_PAIR} "
                f"within {self.timeout} s (answered {ok}, {reason!r}); check that the worker "
                "processes can start and import math-verify, or raise the verifier's timeout")

    # -- scoring
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
        if is_verdict(result):
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
            return self._score_choice(response, letter, info)
        pred = extract_answer(response, self.extract, self.require_think_close)
        if pred is None:
            info["reason"] = "no_answer"
            return RewardResult(0.0, False, info)
        info["extracted"] = pred if len(pred) <= 200 else pred[:200] + "..."
        ok, reason = _judge(gold, pred, self.timeout, self._pool)
        info["reason"] = reason
        if ok is None:
            if reason.startswith("error"):
                info["error"] = f"math verifier backend: {reason}"
            return RewardResult(0.0, None, info)
        if reason == "gold_unparseable":
            return RewardResult(0.0, None, info)
        return RewardResult(float(ok), ok, info)

    def _score_choice(self, response: str, letter: str, info: dict) -> RewardResult:
        body = strip_think(response, require_close=True) if self.require_think_close else response
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

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        """Score many; identical (response, answer) pairs are scored once, the rest concurrently
        (threads waiting on worker processes)."""
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        threads = self.max_workers or self.workers or pool_size()
        keys = [self._key(r, t) for r, t in zip(responses, tasks, strict=True)]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = list(first.values())
        if threads <= 1 or len(unique) <= 1:
            done = {keys[i]: self(responses[i], tasks[i]) for i in unique}
        else:
            with cf.ThreadPoolExecutor(threads) as ex:
                outs = ex.map(lambda i: self(responses[i], tasks[i]), unique)
                done = {keys[i]: out for i, out in zip(unique, outs, strict=True)}
        return [done[k] if first[k] == i else copy.deepcopy(done[k]) for i, k in enumerate(keys)]


def is_verdict(result: RewardResult) -> bool:
    """Whether a result judges the answer (and may be cached): not a backend error, not a
    timeout or memory limit of this check."""
    return not is_unjudged(result) and result.info.get("reason") not in TRANSIENT_REASONS
