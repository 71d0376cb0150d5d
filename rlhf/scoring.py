"""Scoring a generation batch: route each sample to its verifier, run verifiers concurrently,
combine weighted scores. A verifier failure is a recorded zero, never a crashed run."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import defaultdict

from rewards import RewardResult, get_verifier
from rlhf.config import RewardsConfig


class Scorer:
    def __init__(self, cfg: RewardsConfig):
        self.cfg = cfg
        self._specs = [(s.route or s.name, s.weight, get_verifier(s.name, **s.options))
                       for s in cfg.verifiers]
        self._by_name: dict[str, object] = {}
        self._format = None
        if cfg.format_weight:
            self._format = get_verifier("format")

    def _verifiers_for(self, task: dict):
        if self._specs:
            route = task.get(self.cfg.route_field)
            return [(w, v) for r, w, v in self._specs if route is None or r == route or
                    len(self._specs) == 1]
        name = task.get(self.cfg.route_field)
        if not name:
            raise ValueError(f"task has no {self.cfg.route_field!r} field and the recipe lists "
                             "no verifiers (rewards.verifiers)")
        if name not in self._by_name:
            self._by_name[name] = get_verifier(name)
        return [(1.0, self._by_name[name])]

    def score(self, responses: list[str], tasks: list[dict]) -> tuple[list[RewardResult], dict]:
        """One combined RewardResult per response, plus timing metrics."""
        t0 = time.perf_counter()
        jobs = defaultdict(list)  # (weight, verifier) -> [sample index]
        for i, task in enumerate(tasks):
            for w, v in self._verifiers_for(task):
                jobs[(w, id(v))].append((i, v))
        if self._format is not None:
            jobs[(self.cfg.format_weight, id(self._format))] = [(i, self._format) for i in range(len(tasks))]
        parts: dict[int, list[tuple[float, RewardResult]]] = defaultdict(list)
        with cf.ThreadPoolExecutor(min(self.cfg.max_concurrency, max(len(jobs), 1))) as pool:
            futs = {pool.submit(items[0][1].batch, [responses[i] for i, _ in items],
                                [tasks[i] for i, _ in items]): (w, items)
                    for (w, _), items in jobs.items()}
            for fut in cf.as_completed(futs):
                w, items = futs[fut]
                for (i, _), res in zip(items, _safe_batch(fut, len(items))):
                    parts[i].append((w, res))
        out = [_combine(parts[i]) for i in range(len(tasks))]
        return out, {"time/score": time.perf_counter() - t0}


def _safe_batch(fut, n) -> list[RewardResult]:
    try:
        return fut.result()
    except Exception as exc:  # a whole batch failed: every sample gets a recorded zero
        return [RewardResult(0.0, None, {"error": f"{type(exc).__name__}: {exc}"})] * n


def _combine(parts: list[tuple[float, RewardResult]]) -> RewardResult:
    if not parts:
        return RewardResult(0.0, None, {"error": "no verifier for this sample"})
    if len(parts) == 1 and parts[0][0] == 1.0:
        return parts[0][1]
    score = sum(w * r.score for w, r in parts)
    corrects = [r.correct for _, r in parts if r.correct is not None]
    correct = all(corrects) if corrects else None
    return RewardResult(score, correct, {"parts": [r.info for _, r in parts]})
