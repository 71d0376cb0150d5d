"""Step checkpoints of a run: ``checkpoints/step_NNNNNN/`` holds the learners' ``learner.pt``
(model, optimizer, scheduler, RNG) and the driver's ``driver.json`` (step, policy version, data
position, length-window state). Each is written to a temporary directory and renamed into place
when complete, so a crash leaves the previous one intact; the newest ``keep`` are kept."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


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
        done = sorted(p for p in self.root.glob("step_*") if (p / "driver.json").exists()
                      and (p / "learner.pt").exists())
        return done[-1] if done else None

    @staticmethod
    def driver_state(ckpt: Path) -> dict:
        return json.loads((ckpt / "driver.json").read_text())
