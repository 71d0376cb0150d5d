"""Weighted multi-verifier rewards, routed per sample by a dataset field.

A recipe lists verifiers with weights; each sample's ``task[route_field]`` picks the verifier
whose ``name`` equals it (e.g. ``"math"``, ``"countdown"``, ``"my_pkg.rewards:Grader"``), and
specs with ``when: "*"`` (a format reward, a length penalty) apply to every sample::

    router = RewardRouter([
        {"name": "math", "weight": 1.0, "options": {"extract": "boxed"}},
        {"name": "countdown", "weight": 1.0},
        {"name": "format", "weight": 0.1, "when": "*"},
    ], route_field="verifier")
    router("<think>..</think> \\\\boxed{4}", {"verifier": "math", "answer": "4"}).score  # 1.1

A spec may also list the route values it serves: ``{"name": "math", "when": ["gsm8k", "aime"]}``.

Result per sample: ``score`` = sum of weight x score over the matched specs; ``correct`` = the
routed (non-"*") verifier's ``correct``; ``info["parts"]`` holds each part's result. A sample
whose route matches no spec, or whose routed verifier could not judge it, is *unjudged*
(``correct=None`` and ``info["error"]``, :func:`rewards.base.is_unjudged`); it never raises.
``preflight()`` and ``close()`` reach every verifier of the router.
``batch`` hands each verifier its samples in one ``batch`` call, all verifiers concurrently.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewards.base import (
    RewardResult,
    Verifier,
    close,
    get_verifier,
    is_unjudged,
    preflight,
    safe_call,
)


class VerifierSpec(BaseModel):
    """One verifier of a router (also the recipe's ``rewards.verifiers`` entries)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="Registered verifier name or 'package.module:attribute'.")
    weight: float = Field(1.0, description="Weight of this verifier's score.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options for the verifier.")
    when: str | list[str] | None = Field(None, description=(
        "Which samples it scores: their route-field value(s), or '*' for all (an add-on). "
        "Default: samples whose route value is this verifier's name; a single listed verifier "
        "scores every sample."))

    def matches(self, route: Any) -> bool:
        if self.when == "*":
            return True
        if self.when is None:
            return route == self.name
        return route in ([self.when] if isinstance(self.when, str) else self.when)


class RewardRouter:
    """``RewardRouter(specs, route_field="verifier", default_route=None)``; see module doc."""

    def __init__(self, specs: Sequence[dict | VerifierSpec], route_field: str = "verifier",
                 default_route: str | None = None):
        self.specs: list[VerifierSpec] = []
        for i, s in enumerate(specs):
            spec = s if isinstance(s, VerifierSpec) else self._spec(s, i)
            self.specs.append(spec)
        if not self.specs:
            raise ValueError("RewardRouter needs at least one verifier spec")
        self.route_field, self.default_route = route_field, default_route
        self.verifiers: list[Verifier] = [get_verifier(s.name, **s.options) for s in self.specs]

    @staticmethod
    def _spec(d: dict, i: int) -> VerifierSpec:
        unknown = sorted(set(d) - set(VerifierSpec.model_fields))
        if unknown:
            raise ValueError(f"verifier spec #{i}: unknown keys {unknown}; valid: "
                             f"{', '.join(VerifierSpec.model_fields)}")
        try:
            return VerifierSpec(**d)
        except ValidationError as exc:
            raise ValueError(f"verifier spec #{i}: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None

    def _route(self, task: dict) -> Any:
        return task.get(self.route_field, self.default_route)

    def _matched(self, task: dict) -> list[int]:
        route = self._route(task)
        return [i for i, s in enumerate(self.specs) if s.matches(route)]

    def _combine(self, task: dict, parts: dict[int, RewardResult]) -> RewardResult:
        route = self._route(task)
        if not any(self.specs[i].when != "*" for i in parts):
            return RewardResult(0.0, None, {"error": f"no verifier for {self.route_field}={route!r}",
                                            "route": route})
        score = sum(self.specs[i].weight * r.score for i, r in parts.items())
        routed = [r for i, r in parts.items() if self.specs[i].when != "*"]
        correct = routed[0].correct if len(routed) == 1 else (
            None if any(r.correct is None for r in routed) else all(r.correct for r in routed))
        info: dict[str, Any] = {"route": route, "parts": {
            self.specs[i].name: {"score": r.score, "correct": r.correct, "weight": self.specs[i].weight,
                                 "info": r.info} for i, r in parts.items()}}
        unjudged = [(self.specs[i].name, r) for i, r in parts.items() if is_unjudged(r)]
        if unjudged:
            name, r = unjudged[0]
            info["error"] = f"{name}: {r.info['error']}"
            correct = None
        return RewardResult(float(score), correct, info)

    def preflight(self) -> None:
        """Every verifier's backend check (raises ``VerifierUnavailable`` naming the first)."""
        for v in self.verifiers:
            preflight(v)

    def close(self) -> None:
        """Release every verifier's resources (idempotent)."""
        for v in self.verifiers:
            close(v)

    def __call__(self, response: str, task: dict) -> RewardResult:
        parts = {i: safe_call(self.verifiers[i], response, task) for i in self._matched(task)}
        return self._combine(task, parts)

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        per_spec: dict[int, list[int]] = {}
        for j, t in enumerate(tasks):
            for i in self._matched(t):
                per_spec.setdefault(i, []).append(j)

        def run(i: int) -> tuple[int, list[RewardResult]]:
            idx = per_spec[i]
            try:
                out = self.verifiers[i].batch([responses[j] for j in idx], [tasks[j] for j in idx])
            except Exception:  # a broken batch falls back to safe per-sample calls
                out = [safe_call(self.verifiers[i], responses[j], tasks[j]) for j in idx]
            return i, list(out)

        parts: list[dict[int, RewardResult]] = [{} for _ in tasks]
        with cf.ThreadPoolExecutor(max(1, len(per_spec))) as ex:
            for i, outs in ex.map(run, list(per_spec)):
                for j, r in zip(per_spec[i], outs, strict=True):
                    parts[j][i] = r
        return [self._combine(t, p) for t, p in zip(tasks, parts, strict=True)]
