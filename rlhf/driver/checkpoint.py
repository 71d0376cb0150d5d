"""Step checkpoints of a run: ``<run.checkpoint_dir>/step_NNNNNN/`` holds the learners' sharded
state (``learner/``, a torch.distributed.checkpoint directory with one shard per rank, and
``learner.json``: rlhf/learner/checkpoint.py) and the driver's ``driver.json`` (step, policy
version, data position, length-window state). Each is written to a temporary directory and
renamed into place when complete, so a crash leaves the previous one intact; the newest ``keep``
are kept. Every learner writes its own shard there, so the directory must be one that every node
reaches (a shared filesystem): :func:`check_reachable` makes sure of it at start."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from rlhf.config import RunConfig
from rlhf.learner.checkpoint import RULE, is_complete, write_token


def checkpoint_root(run: RunConfig) -> Path:
    """``run.checkpoint_dir``, else ``<output_dir>/<name>/checkpoints``; absolute, so that every
    node is given the same path."""
    return Path(run.checkpoint_dir or Path(run.output_dir) / run.name / "checkpoints").absolute()


def run_checkpoints(run_dir: Path) -> Path:
    """The checkpoint directory of the run in ``run_dir``, as its ``recipe.json`` says."""
    recipe = run_dir / "recipe.json"
    custom = json.loads(recipe.read_text())["run"].get("checkpoint_dir") if recipe.exists() else None
    return Path(custom) if custom else run_dir / "checkpoints"


class CheckpointDirError(RuntimeError):
    """A node (the driver or a learner) cannot reach or write ``run.checkpoint_dir``."""


class Checkpoints:
    def __init__(self, root: Path, keep: int):
        self.root, self.keep = Path(root), keep

    def save(self, step: int, learners: Any, driver_state: dict) -> Path:
        """``learners`` (a LearnerGroup) write their part, then the driver state; atomic."""
        self.root.mkdir(parents=True, exist_ok=True)
        final, tmp = self.root / f"step_{step:06d}", self.root / f".tmp_step_{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        learners.save(str(tmp))
        (tmp / "driver.json").write_text(json.dumps({"step": step, **driver_state}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(self.root.glob("step_*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest(self) -> Path | None:
        """The newest complete checkpoint (both parts written), or None."""
        done = sorted(p for p in self.root.glob("step_*")
                      if (p / "driver.json").exists() and is_complete(p))
        return done[-1] if done else None

    @staticmethod
    def driver_state(ckpt: Path) -> dict:
        return json.loads((ckpt / "driver.json").read_text())


def check_reachable(root: Path, learners: Any) -> None:
    """The driver creates ``root`` and a probe file in it; every learner actor must see that
    file and write and delete its own (``LearnerGroup.probe_checkpoint_dir``). Raises
    :class:`CheckpointDirError` naming every node that cannot."""
    try:
        token = write_token(root)
    except OSError as exc:
        raise CheckpointDirError(f"the driver on {socket.gethostname()} cannot create or write "
                                 f"the checkpoint directory {root} ({exc}): {RULE}") from exc
    try:
        problems = learners.probe_checkpoint_dir(str(root), str(token))
    finally:
        token.unlink(missing_ok=True)
    if problems:
        raise CheckpointDirError("\n".join(problems))
