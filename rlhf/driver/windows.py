"""M1's staged output-length windows (40K -> 48K -> 56K -> 64K -> 72K -> 80K).

M1 advanced to the next window when the perplexity of generated text had converged and the p99
output length neared the current window. :class:`LengthWindows` tracks both signals per step and
says which window is in force; its state goes into checkpoints so a resume continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LengthWindows:
    windows: list[int]
    near_frac: float = 0.95       # p99 length >= near_frac * window counts as "near"
    ppl_rel_tol: float = 0.02     # perplexity converged: relative change below this ...
    patience: int = 3             # ... for this many consecutive steps
    index: int = 0
    history: list[float] = field(default_factory=list)

    def __post_init__(self):
        if not self.windows or any(b <= a for a, b in zip(self.windows, self.windows[1:])):
            raise ValueError(f"length windows must be a non-empty increasing list, got {self.windows}")

    @property
    def current(self) -> int:
        return self.windows[self.index]

    def converged(self) -> bool:
        h = self.history[-(self.patience + 1):]
        if len(h) < self.patience + 1:
            return False
        return all(abs(b - a) / max(abs(a), 1e-12) < self.ppl_rel_tol for a, b in zip(h, h[1:]))

    def update(self, p99_length: float, perplexity: float) -> dict[str, float]:
        """Record a step's signals; advance a window when both say so. Returns the metrics
        (the window used for this step, the signals, whether it advanced)."""
        used = self.current
        self.history.append(perplexity)
        near = p99_length >= self.near_frac * used
        advanced = near and self.converged() and self.index + 1 < len(self.windows)
        if advanced:
            self.index += 1
            self.history = []
        return {"window/current": used, "window/next": self.current, "window/advanced": float(advanced),
                "window/p99_over_window": p99_length / used, "ppl/generated": perplexity}

    def state(self) -> dict:
        return {"index": self.index, "history": list(self.history)}

    def load_state(self, state: dict) -> None:
        self.index, self.history = int(state["index"]), list(state["history"])


def generated_perplexity(logprobs: list[list[float]]) -> float:
    """exp(-mean log-probability) over all sampled tokens of a batch."""
    n = sum(len(x) for x in logprobs)
    return math.exp(-sum(sum(x) for x in logprobs) / n) if n else float("nan")
