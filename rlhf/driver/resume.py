"""Safe resume: where a run continues, and whether the recipe it continues under is the one that
wrote the checkpoint.

``recipe.json`` in the run directory is the recipe of the run that wrote its checkpoints. Before
a run resumes from one, :func:`check_recipe` compares it with the new recipe, field by field:
any change outside :data:`RESUME_SAFE` (the run's length and bookkeeping, where metrics go,
resources) stops the run with the list of changed fields, unless the user allows it
(``rlhf train --allow-recipe-change``); allowed changes are printed and appended to
``recipe_changes.jsonl``.

:class:`ResumePoint` is the position a run continues from: RL steps done and warm-up steps
done. Metrics records past it are dropped (they will be redone), so a resumed run, also one
interrupted during its warm-up, has no duplicate rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.config import Recipe

# Fields a resumed run may change without --allow-recipe-change: how long it runs, how often it
# evaluates and saves, where its metrics and checkpoints go, and the resources of its actors
# (per-prompt seeds make the samples independent of the number of rollout workers' CPUs and
# restarts).
RESUME_SAFE = ("run.steps", "run.eval_every", "run.save_every", "run.keep_checkpoints",
               "run.checkpoint_dir", "run.plot", "run.resume", "run.timeouts", "logging",
               "rollout.num_cpus", "rollout.max_restarts", "train.num_cpus")


@dataclass(frozen=True)
class ResumePoint:
    """``step`` RL steps and ``warmup_step`` warm-up steps are done (a fresh run: 0 and 0)."""

    step: int = 0
    warmup_step: int = 0

    def keeps(self, record: dict) -> bool:
        """Whether a metrics record of an earlier attempt stays: warm-up records up to the
        warm-up step reached, RL and eval records up to the RL step reached (the evaluation at
        step 0 follows the warm-up, so it is redone unless an RL step was checkpointed)."""
        if record.get("kind") == "warmup":
            return int(record.get("warmup_step", 0)) <= self.warmup_step
        return self.step > 0 and int(record.get("step", -1)) <= self.step

    def first_steps(self) -> dict[str, int]:
        """The first step of each axis (rlhf.driver.tracking) that will be logged again."""
        return {"step": self.step + 1 if self.step else 0, "warmup/step": self.warmup_step + 1}


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        show = lambda v: "(absent)" if v is _ABSENT else json.dumps(v)  # noqa: E731
        return f"{self.field}: {show(self.old)} -> {show(self.new)}"


_ABSENT = object()


class RecipeChanged(RuntimeError):
    """The recipe differs from the one that wrote the checkpoint in fields that matter."""

    def __init__(self, run_dir: Path, checkpoint: Path, changes: list[Change]):
        self.changes = changes
        lines = "\n".join(f"  - {c}" for c in changes)
        super().__init__(
            f"{run_dir} holds a checkpoint ({checkpoint.name}) written under another recipe; "
            f"{len(changes)} field(s) changed:\n{lines}\nResuming would continue that checkpoint "
            "under the new recipe. Pass --allow-recipe-change to do so anyway (the changes are "
            "logged), set run.name to start a new run, or run.resume=false to start this one over.")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted field paths -> values (lists are values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipe_changes(old: dict, new: dict) -> list[Change]:
    """Every changed field outside :data:`RESUME_SAFE`, in field order."""
    a, b = flatten(old), flatten(new)
    safe = lambda f: any(f == s or f.startswith(s + ".") for s in RESUME_SAFE)  # noqa: E731
    keys = list(b) + [k for k in a if k not in b]
    return [Change(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in keys
            if not safe(k) and a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def check_recipe(run_dir: Path, recipe: Recipe, checkpoint: Path | None,
                 allow_change: bool = False) -> list[Change]:
    """Before resuming from ``checkpoint``: the changed fields (raises :class:`RecipeChanged`
    unless ``allow_change``); then ``recipe.json`` holds the new recipe. Allowed changes are
    appended to ``recipe_changes.jsonl`` with the checkpoint they apply from."""
    run_dir = Path(run_dir)
    saved = run_dir / "recipe.json"
    new = recipe.model_dump(mode="json")
    changes: list[Change] = []
    if checkpoint is not None and saved.exists():
        changes = recipe_changes(json.loads(saved.read_text()), new)
        if changes and not allow_change:
            raise RecipeChanged(run_dir, checkpoint, changes)
        if changes:
            with (run_dir / "recipe_changes.jsonl").open("a") as fh:
                fh.write(json.dumps({"checkpoint": checkpoint.name,
                                     "changes": [str(c) for c in changes]}) + "\n")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(new, indent=2))
    return changes
