"""Format reward, registered as ``"format"`` (M1 combines one with rule-based correctness).

Score 1.0 when the response has a finished thinking section and a boxed answer after it, else
0.0; ``info["reason"]`` names the first missing piece.

    >>> from rewards import get_verifier
    >>> get_verifier("format")("<think>2+2</think> \\\\boxed{4}", {}).score
    1.0

Options:
    require_think: a ``</think>`` must close the thinking section (default True)
    require_open: the response must also start with ``<think>`` (default False: many chat
        templates put the opening tag in the prompt)
    require_boxed: a balanced ``\\boxed{...}`` must follow the thinking section (default True)
    max_think_closes: more ``</think>`` tags than this fails (default 1)
"""

from __future__ import annotations

from rewards.base import BaseVerifier, RewardResult, register_verifier
from rewards.extract import THINK_CLOSE, last_boxed, strip_think

THINK_OPEN = "<think>"


@register_verifier("format")
class FormatVerifier(BaseVerifier):
    def __init__(self, require_think: bool = True, require_open: bool = False,
                 require_boxed: bool = True, max_think_closes: int = 1):
        self.require_think, self.require_open = require_think, require_open
        self.require_boxed, self.max_think_closes = require_boxed, max_think_closes

    def score(self, response: str, task: dict) -> RewardResult:
        if self.require_open and not response.lstrip().startswith(THINK_OPEN):
            return RewardResult(0.0, False, {"reason": "no opening <think>"})
        closes = response.count(THINK_CLOSE)
        if self.require_think and closes == 0:
            return RewardResult(0.0, False, {"reason": "thinking not finished (no </think>)"})
        if closes > self.max_think_closes:
            return RewardResult(0.0, False, {"reason": f"{closes} </think> tags"})
        tail = strip_think(response) or ""
        if self.require_boxed and last_boxed(tail) is None:
            return RewardResult(0.0, False, {"reason": "no boxed answer after the thinking section"})
        return RewardResult(1.0, True, {"reason": "ok"})
