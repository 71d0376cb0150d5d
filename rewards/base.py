"""Verifier interface, result type and registry.

A verifier scores one response against one task::

    >>> from rewards import get_verifier
    >>> v = get_verifier("math")
    >>> v(r"... so the answer is \\boxed{\\frac{1}{2}}", {"answer": "0.5"}).score
    1.0

Built-ins are registered by name with :func:`register_verifier`; user verifiers are loaded by
import path (``"my_pkg.rewards:Grader"``) or through the ``m1rl.verifiers`` entry-point group.
A verifier that raises never crashes a run: :func:`safe_call` turns the exception into a
score-0 :class:`RewardResult` with ``correct=None`` whose ``info["error"]`` says what happened.
Such a result is *unjudged* (:func:`is_unjudged`): the run counts it as a verifier error and
stops when a step has too many of them; it is never cached as a verdict.

Lifecycle: a verifier that holds resources (worker processes, container pools) releases them in
``close()`` (idempotent) and works as a context manager; ``preflight()`` checks that its backend
can work (Docker up, image present, worker starts) and raises :class:`VerifierUnavailable` with a
message that says what to fix. A run calls ``preflight()`` on every configured verifier before
training and ``close()`` at its end, also on a crash.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import importlib.metadata
import inspect
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ENTRY_POINT_GROUP = "m1rl.verifiers"


@dataclass
class RewardResult:
    """Outcome of verifying one response.

    score: the reward (float; 1.0 / 0.0 for binary verifiers).
    correct: whether the response solved the task; None when the verifier cannot tell.
    info: why (extracted answer, parse failure, timeout, error, failing tests, ...).
    """

    score: float
    correct: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


def is_unjudged(result: RewardResult) -> bool:
    """The verifier could not judge this sample (it raised, its backend failed, no verifier
    matched): ``correct is None`` with an ``info["error"]``."""
    return result.correct is None and "error" in result.info


class VerifierUnavailable(RuntimeError):
    """A verifier's backend cannot work here (raised by ``preflight``; the message says why and
    what to do about it)."""


@runtime_checkable
class Verifier(Protocol):
    def __call__(self, response: str, task: dict) -> RewardResult: ...

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]: ...


def preflight(verifier: Verifier) -> None:
    """Run the verifier's backend check if it has one (plug-ins may not)."""
    check = getattr(verifier, "preflight", None)
    if callable(check):
        check()


def close(verifier: Verifier) -> None:
    """Release the verifier's resources if it holds any (plug-ins may not have ``close``)."""
    fn = getattr(verifier, "close", None)
    if callable(fn):
        fn()


def safe_call(fn: Callable[[str, dict], RewardResult], response: str, task: dict) -> RewardResult:
    """Call a scoring function; an exception becomes score 0 with the reason recorded."""
    try:
        result = fn(response, task)
    except Exception as exc:  # a verifier bug must never stop a run
        return RewardResult(0.0, None, {"error": f"{type(exc).__name__}: {exc}",
                                        "traceback": traceback.format_exc(limit=5)})
    if not isinstance(result, RewardResult):
        return RewardResult(0.0, None, {"error": f"verifier returned {type(result).__name__}, "
                                                 "expected RewardResult"})
    return result


class BaseVerifier:
    """Helper base: subclasses implement ``score(response, task)``; calls are made safe and
    ``batch`` runs them in a thread pool of ``max_workers`` (1 = sequential)."""

    max_workers: int = 1

    def score(self, response: str, task: dict) -> RewardResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def preflight(self) -> None:
        """Check that the backend works; raise :class:`VerifierUnavailable` if not. Pure-Python
        verifiers have nothing to check."""

    def close(self) -> None:
        """Release held resources (idempotent). Nothing to release by default."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, response: str, task: dict) -> RewardResult:
        return safe_call(self.score, response, task)

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        if self.max_workers <= 1 or len(responses) <= 1:
            return [self(r, t) for r, t in zip(responses, tasks)]
        with cf.ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(self, responses, tasks))


class FunctionVerifier(BaseVerifier):
    """Wraps a plain function ``fn(response, task) -> RewardResult | float | bool``."""

    def __init__(self, fn: Callable[..., Any], **options: Any):
        self.fn, self.options = fn, options

    def score(self, response: str, task: dict) -> RewardResult:
        out = self.fn(response, task, **self.options)
        if isinstance(out, RewardResult):
            return out
        if isinstance(out, bool):
            return RewardResult(float(out), out, {})
        if isinstance(out, (int, float)):
            return RewardResult(float(out), None, {})
        raise TypeError(f"plug-in returned {type(out).__name__}; expected RewardResult, float or bool")


_REGISTRY: dict[str, Callable[..., Verifier]] = {}


def register_verifier(name: str) -> Callable[[Callable[..., Verifier]], Callable[..., Verifier]]:
    """Class decorator: ``@register_verifier("math")`` makes ``get_verifier("math")`` build it."""

    def deco(factory: Callable[..., Verifier]) -> Callable[..., Verifier]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"verifier {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtins() -> None:
    # Importing the modules registers them; optional ones may be missing in a slim install.
    for mod in ("rewards.math", "rewards.format", "rewards.code", "rewards.swe", "rewards.tasks"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def available_verifiers() -> list[str]:
    _load_builtins()
    names = set(_REGISTRY)
    names.update(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"verifier import path {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} for verifier {path!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (verifier {path!r})")
        obj = getattr(obj, part)
    return obj


def _instantiate(obj: Any, options: dict[str, Any], origin: str) -> Verifier:
    if inspect.isclass(obj):
        inst = obj(**options)
        if not callable(inst):
            raise TypeError(f"verifier class {origin} builds a non-callable object")
        if not hasattr(inst, "batch"):
            inst = FunctionVerifier(inst)
        return inst
    if callable(obj):
        return FunctionVerifier(obj, **options)
    raise TypeError(f"verifier {origin} is a {type(obj).__name__}, not a class or function")


def get_verifier(name_or_import_path: str, **options: Any) -> Verifier:
    """Build a verifier by registered name, entry-point name, or ``pkg.module:attr`` path.

    An unknown name raises ``ValueError`` listing the valid names.
    """
    name = name_or_import_path
    if ":" in name:
        return _instantiate(_import_path(name), options, name)
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name](**options)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _instantiate(ep.load(), options, f"entry point {name!r}")
    raise ValueError(f"unknown verifier {name!r}; valid names: {', '.join(available_verifiers())} "
                     "(or an import path 'package.module:attribute')")
