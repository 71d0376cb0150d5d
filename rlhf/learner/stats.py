"""Statistics of tensors the learner side logs: Pearson correlation."""

from __future__ import annotations

import math

import torch


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (NaN when either is constant)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else float("nan")
