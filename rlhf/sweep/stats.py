"""The statistics of a study: mean and 95% interval over seeds (Student t), bootstrap over
problems, the paired bootstrap of a before -> after difference, and steps to a threshold.

Conventions (stated once, used by the sweep report and the run summary):
- over seeds: mean +- t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation (ddof 1);
  with one seed the interval is the point (no spread is known);
- over problems: percentile bootstrap of the mean of per-problem pass rates (each problem's
  rate averaged over its samples and seeds), ``n_boot`` resamples with a fixed generator;
- paired: the same problems before and after; resample problems, take the mean difference;
- steps to threshold: the first evaluated step whose mean pass rate reaches the threshold,
  linearly interpolated between that step and the one before; None when never reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) over independent runs (Student t on n - 1 degrees of freedom)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci of no values")
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    from scipy import stats as sps  # here: a run's own summary needs only numpy

    half = float(sps.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def bootstrap_ci(per_problem: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap over problems."""
    x = np.asarray(per_problem, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci of no problems")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean difference after - before, low, high), problems resampled in pairs."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if b.shape != a.shape:
        raise ValueError(f"paired bootstrap needs the same problems: {b.size} before, {a.size} after")
    return bootstrap_ci(a - b, n_boot, level, seed)


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> float | None:
    """The (interpolated) step at which ``values`` first reach ``threshold``."""
    prev: tuple[int, float] | None = None
    for s, v in zip(steps, values):
        if v >= threshold:
            if prev is None or v == prev[1]:
                return float(s)
            s0, v0 = prev
            return s0 + (threshold - v0) / (v - v0) * (s - s0)
        prev = (s, v)
    return None
