"""Running a sweep: every run is ``rlhf train`` in its own process (a crash of one run is that
run's failure, not the sweep's), ``parallel`` at a time, with one progress bar over all RL steps
(run i of n, its step, ETA). A run whose ``summary.json`` exists is finished and never rerun; an
interrupted run resumes from its own last checkpoint, so running the sweep again continues it.
Each run's console output goes to ``logs/<run>.log`` in the sweep directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from rlhf.config import Recipe


@dataclass
class RunState:
    name: str
    recipe: Recipe
    dir: Path
    status: str = "pending"         # pending | done | running | failed
    proc: subprocess.Popen | None = None
    log: Path | None = None
    returncode: int | None = None
    attempts: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return (self.dir / "summary.json").exists()

    def steps_done(self) -> int:
        path = self.dir / "metrics.jsonl"
        if self.finished:
            return self.recipe.run.steps
        if not path.exists():
            return 0
        last = 0
        for ln in path.read_text().splitlines():
            if '"kind": "train"' in ln:
                last = max(last, json.loads(ln)["step"])
        return last


def run_all(recipes: dict[str, Recipe], sweep_root: Path, parallel: int = 1,
            address: str | None = None, poll_s: float = 2.0, stagger_s: float = 0.0,
            retries: int = 0) -> list[RunState]:
    """Run every unfinished run, ``parallel`` at a time, at least ``stagger_s`` apart; a run that
    fails is queued again (it resumes) up to ``retries`` times. Return every run's state
    (``failed`` ones name their log)."""
    (sweep_root / "recipes").mkdir(parents=True, exist_ok=True)
    (sweep_root / "logs").mkdir(parents=True, exist_ok=True)
    states = [RunState(n, r, Path(r.run.output_dir) / r.run.name) for n, r in recipes.items()]
    for s in states:
        if s.finished:
            s.status = "done"
    todo = [s for s in states if s.status == "pending"]
    total = sum(s.recipe.run.steps for s in states)
    bar = tqdm(total=total, desc="sweep", unit="step",
               initial=sum(s.steps_done() for s in states if s.status == "done"))
    tqdm.write(f"sweep: {len(states)} runs, {len(states) - len(todo)} already finished, "
               f"{len(todo)} to run ({parallel} at a time)")
    running: list[RunState] = []
    next_start = 0.0
    try:
        while todo or running:
            while todo and len(running) < parallel and time.monotonic() >= next_start:
                s = todo.pop(0)
                s.attempts += 1
                running.append(_start(s, sweep_root, address))
                next_start = time.monotonic() + stagger_s
            time.sleep(poll_s)
            for s in list(running):
                if s.proc is not None and s.proc.poll() is not None:
                    s.returncode = s.proc.returncode
                    s.status = "done" if s.returncode == 0 and s.finished else "failed"
                    running.remove(s)
                    if s.status == "failed":
                        again = s.attempts <= retries
                        tqdm.write(f"sweep: run {s.name} failed (exit {s.returncode}); log: {s.log}"
                                   + (f"; retry {s.attempts} of {retries}" if again else ""))
                        if again:
                            s.status = "pending"
                            todo.append(s)
            done = sum(s.steps_done() for s in states)
            bar.update(done - bar.n)
            i = sum(1 for s in states if s.status in ("done", "failed"))
            bar.set_description(f"sweep: run {min(i + 1, len(states))}/{len(states)}"
                                + "".join(f" | {s.name} step {s.steps_done()}/{s.recipe.run.steps}"
                                          for s in running))
    except BaseException:
        for s in running:  # Ctrl-C: each run gets Ctrl-C too (it stops its actors, keeps its last
            if s.proc is not None:  # checkpoint); one that has not exited after 60 s is killed
                s.proc.send_signal(signal.SIGINT)
        for s in running:
            if s.proc is not None:
                try:
                    s.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
        raise
    finally:
        bar.close()
    return states


def _start(state: RunState, sweep_root: Path, address: str | None) -> RunState:
    recipe_path = sweep_root / "recipes" / f"{state.name}.yaml"
    recipe_path.write_text(yaml.safe_dump(state.recipe.model_dump(mode="json"), sort_keys=False))
    state.log = sweep_root / "logs" / f"{state.name}.log"
    cmd = [sys.executable, "-m", "rlhf.cli", "train", str(recipe_path)]
    if address:
        cmd += ["--address", address]
    with state.log.open("a") as fh:
        state.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    state.status = "running"
    return state
