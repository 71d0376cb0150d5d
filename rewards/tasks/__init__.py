"""Seeded synthetic reasoning tasks, each with a verifier and a reference solver.

``TASKS[name].generate(n, difficulty, seed)`` returns task dicts with ``prompt``, ``answer``,
``solution`` (a worked reference solution for supervised warm-up) and ``verifier`` (the name
of the verifier that scores it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_TASK_MODULES = {"arithmetic": "rewards.tasks.arithmetic", "countdown": "rewards.tasks.countdown",
                 "countdown_compact": "rewards.tasks.countdown_compact",
                 "logic": "rewards.tasks.logic"}


def get_task(name: str) -> ModuleType:
    if name not in _TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(_TASK_MODULES))}")
    return importlib.import_module(_TASK_MODULES[name])


def available_tasks() -> list[str]:
    return sorted(_TASK_MODULES)


def _register_all() -> None:
    for mod in _TASK_MODULES.values():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a task module not written yet
            if exc.name != mod:
                raise


_register_all()
