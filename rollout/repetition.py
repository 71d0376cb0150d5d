"""M1's repetition early stop: a generation whose last ``window`` tokens each had probability
greater than ``prob`` is in a degenerate loop; stop it (finish reason ``repetition``)."""

from __future__ import annotations

import math

import torch


class RepetitionTracker:
    """Counts, per sequence, consecutive sampled tokens with probability > ``prob``.

    ``update(logprobs)`` takes the sampled tokens' log-probabilities ``[N]`` of one decode step
    and returns a bool ``[N]``: True where the run has reached ``window``. ``window <= 0``
    disables the rule.
    """

    def __init__(self, batch_size: int, window: int, prob: float, device=None):
        if window > 0 and not 0.0 < prob < 1.0:
            raise ValueError(f"repetition prob must be in (0, 1), got {prob}")
        self.window = window
        self.log_threshold = math.log(prob) if window > 0 else 0.0
        self.run = torch.zeros(batch_size, dtype=torch.long, device=device)  # [N]

    def update(self, logprobs: torch.Tensor) -> torch.Tensor:
        if self.window <= 0:
            return torch.zeros_like(self.run, dtype=torch.bool)
        confident = logprobs > self.log_threshold
        self.run = torch.where(confident, self.run + 1, torch.zeros_like(self.run))
        return self.run >= self.window


def first_repetition_stop(logprobs: list[float], window: int, prob: float) -> int | None:
    """Index of the token at which the rule fires on a finished sequence (None if never):
    the plain-loop reference for tests."""
    if window <= 0:
        return None
    thr, run = math.log(prob), 0
    for i, lp in enumerate(logprobs):
        run = run + 1 if lp > thr else 0
        if run >= window:
            return i
    return None


class StreamingRepetition:
    """The rule on one sequence whose sampled-token log-probabilities arrive in chunks (the
    engine's per-step outputs). ``feed`` returns True once, when the rule fires; ``stop`` is then
    the index of the token at which it fired (as :func:`first_repetition_stop` would give on the
    whole sequence)."""

    def __init__(self, window: int, prob: float):
        self.window, self.threshold = window, math.log(prob)
        self.run = self.seen = 0
        self.stop: int | None = None

    def feed(self, logprobs) -> bool:
        if self.stop is not None or self.window <= 0:
            return False
        for lp in logprobs:
            self.run = self.run + 1 if lp > self.threshold else 0
            self.seen += 1
            if self.run >= self.window:
                self.stop = self.seen - 1
                return True
        return False
