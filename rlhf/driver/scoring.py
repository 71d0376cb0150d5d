"""Scoring a generation batch through :class:`rewards.combine.RewardRouter`: each sample goes
to its verifier (by the recipe's list, or by the task's own ``verifier`` field), verifiers run
concurrently, the format reward is added with its weight. A verifier failure is a recorded
zero, never a crashed sample; the step's count of them is the metric ``verifier/errors``, and a
step where more than ``rewards.max_error_rate`` of the samples could not be judged stops the run
(:class:`VerifierErrors`): a backend that went down must not turn into a run of zero rewards.
``preflight`` checks every verifier the data will reach before anything trains; ``close``
releases their pools."""

from __future__ import annotations

import time

from rewards import RewardResult, is_unjudged
from rewards.combine import RewardRouter
from rlhf.config import RewardsConfig

_ALL = "__m1rl_score_all__"  # a task field that never exists: every sample takes the default route


class VerifierErrors(RuntimeError):
    """Too many samples of a step could not be judged."""


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
        specs = list(vs) + self._extra()
        if len(vs) == 1 and vs[0].when is None:  # one verifier scores every sample
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

    def preflight(self, route_values: set | None = None) -> None:
        """Check the backend of every verifier that will score: the recipe's list, or the
        verifiers named by ``route_values`` (the data's route-field values). Raises
        ``rewards.VerifierUnavailable`` with the verifier's message."""
        if self._fixed is not None:
            self._fixed.preflight()
        elif route_values:
            self._router_for([{self.cfg.route_field: v} for v in route_values]).preflight()

    def close(self) -> None:
        """Release every verifier's pools and workers (idempotent)."""
        for router in [self._fixed, *self._routers.values()]:
            if router is not None:
                router.close()

    def score(self, responses: list[str], tasks: list[dict]) -> tuple[list[RewardResult], dict]:
        """One combined RewardResult per response, plus timing and queueing metrics. Raises
        :class:`VerifierErrors` when the share of unjudged samples passes the threshold."""
        t0 = time.perf_counter()
        out = self._router_for(tasks).batch(responses, tasks)
        failed = [r for r in out if unjudged(r)]
        if out and len(failed) / len(out) > self.cfg.max_error_rate:
            reasons = sorted({_error_of(r) for r in failed})
            raise VerifierErrors(
                f"{len(failed)} of {len(out)} samples could not be judged (more than "
                f"rewards.max_error_rate={self.cfg.max_error_rate}); the verifiers said: "
                + "; ".join(reasons[:3]))
        metrics = {"time/score": time.perf_counter() - t0, "verifier/errors": len(failed)}
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


def _error_of(r: RewardResult) -> str:
    if "error" in r.info:
        return str(r.info["error"])[:300]
    errs = [str(p.get("info", {}).get("error")) for p in r.info.get("parts", {}).values()
            if "error" in p.get("info", {})]
    return errs[0][:300] if errs else "unknown"


def _queue_times(r: RewardResult) -> list[float]:
    parts = r.info.get("parts", {})
    return [p["info"]["queue_s"] for p in parts.values()
            if isinstance(p.get("info", {}).get("queue_s"), (int, float))]


def route_values(field: str, *datasets) -> set:
    """The values of the route field over the given datasets (None entries skipped)."""
    return {v for ds in datasets if ds is not None and field in ds.column_names for v in ds[field]}
