"""Scoring a generation batch through :class:`rewards.combine.RewardRouter`: each sample goes
to its verifier (by the recipe's list, or by the task's own ``verifier`` field), verifiers run
concurrently, the format reward is added with its weight. A verifier failure is a recorded
zero, never a crashed run; the step's count of them is the metric ``verifier/errors``."""

from __future__ import annotations

import time

from rewards import RewardResult, is_unjudged
from rewards.combine import RewardRouter
from rlhf.config import RewardsConfig

_ALL = "__m1rl_score_all__"  # a task field that never exists: every sample takes the default route


class Scorer:
    def __init__(self, cfg: RewardsConfig):
        self.cfg = cfg
        self._routers: dict[frozenset, RewardRouter] = {}
        self._fixed = self._build_fixed() if cfg.verifiers else None

    def _extra(self) -> list[dict]:
        return [{"name": "format", "weight": self.cfg.format_weight, "when": "*"}] \
            if self.cfg.format_weight else []

    def _build_fixed(self) -> RewardRouter:
        vs = self.cfg.verifiers
        specs = [{"name": v.name, "weight": v.weight, "options": dict(v.options),
                  "when": v.route} for v in vs] + self._extra()
        if len(vs) == 1 and vs[0].route is None:  # one verifier scores every sample
            return RewardRouter(specs, route_field=_ALL, default_route=vs[0].name)
        return RewardRouter(specs, route_field=self.cfg.route_field)

    def _router_for(self, tasks: list[dict]) -> RewardRouter:
        if self._fixed is not None:
            return self._fixed
        names = frozenset(t.get(self.cfg.route_field) for t in tasks)
        if None in names:
            raise ValueError(f"a task has no {self.cfg.route_field!r} field and the recipe lists no "
                             "verifiers (rewards.verifiers)")
        if names not in self._routers:
            specs = [{"name": n} for n in sorted(names, key=str)] + self._extra()
            self._routers[names] = RewardRouter(specs, route_field=self.cfg.route_field)
        return self._routers[names]

    def score(self, responses: list[str], tasks: list[dict]) -> tuple[list[RewardResult], dict]:
        """One combined RewardResult per response, plus timing and queueing metrics."""
        t0 = time.perf_counter()
        out = self._router_for(tasks).batch(responses, tasks)
        metrics = {"time/score": time.perf_counter() - t0,
                   "verifier/errors": sum(1 for r in out if unjudged(r))}
        queued = [q for r in out for q in _queue_times(r)]
        if queued:
            metrics["verifier/queue_s_mean"] = sum(queued) / len(queued)
            metrics["verifier/queue_s_max"] = max(queued)
        return out, metrics


def unjudged(r: RewardResult) -> bool:
    """A verifier could not judge this sample (it raised, timed out, or no verifier matched):
    :func:`rewards.is_unjudged` of the routed result or of any of its parts."""
    parts = r.info.get("parts", {}).values()
    return is_unjudged(r) or any(
        is_unjudged(RewardResult(p.get("score", 0.0), p.get("correct"), p.get("info", {})))
        for p in parts)


def _queue_times(r: RewardResult) -> list[float]:
    parts = r.info.get("parts", {})
    return [p["info"]["queue_s"] for p in parts.values()
            if isinstance(p.get("info", {}).get("queue_s"), (int, float))]
