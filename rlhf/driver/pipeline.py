"""When each step's batch is generated and when the engines get new weights
(``train.async_mode``).

``off``: step n submits batch n, waits for it, trains on it, then pushes the new weights.

``one_step``: batch n+1 is submitted, with the weights of version n, before the learners train
on batch n, so generation overlaps scoring and training; a round takes the longer of the two
instead of their sum. Step n, in order::

    collect batch n -> push version n (the learners are ahead) -> submit batch n+1 -> train on n

The push sits between a collect and the next submit: an engine never receives weights while a
generate is in flight. Batch n+1 is then one policy version old when it is trained on (the
learner checks ``train.max_staleness`` and logs ``train/staleness``; the importance-weight
maths for it is in rlhf/learner/losses.py). The last step submits a batch too, so that a run
continued with more steps (resume) trains on what an uninterrupted longer run would have.

:meth:`Pipeline.drain` collects the batch in flight and pushes the newest weights; the run calls
it before it evaluates (the evaluation sees the newest policy) and before it saves: the
checkpoint holds the collected batch (:meth:`Pipeline.state`), and a resumed run trains on it
instead of regenerating it with weights it no longer has. Draining changes nothing the run
computes (the same batch, the same weights, only collected earlier), so a resumed run's
per-step metrics equal an uninterrupted run's.

A rollout worker that dies with a batch in flight is restarted and its prompts re-issued when
the batch is collected (:meth:`rlhf.driver.roles.RolloutGroup.collect`); the restart hook gives
it the last pushed weights (the object store keeps them: the same samples again). The GPU
transports keep no copy, so there the re-issued prompts are sampled by the learners' current
weights, and labelled with that version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rlhf.driver.roles import InFlight
from rlhf.driver.samples import Batch
from rollout.base import Completion, SamplingConfig


@dataclass
class Generated:
    """A collected batch: its prompts, how they were sampled, the completions, and the seconds
    from submit to collect (one_step: an upper bound of the generation time)."""

    batch: Batch
    sampling: SamplingConfig
    completions: list[Completion]
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # of the step that takes it

    def state(self) -> dict:
        return {"batch": asdict(self.batch), "sampling": asdict(self.sampling),
                "completions": [asdict(c) for c in self.completions], "seconds": self.seconds}

    @classmethod
    def from_state(cls, d: dict) -> Generated:
        s = d["sampling"]
        return cls(Batch(**d["batch"]), SamplingConfig(**{**s, "stop_token_ids": tuple(s["stop_token_ids"])}),
                   [Completion(**c) for c in d["completions"]], d["seconds"])


class Pipeline:
    """``rollouts``: a :class:`rlhf.driver.roles.RolloutGroup` (its ``submit`` / ``collect``);
    ``next_batch(step)`` and ``sampling()``: the step's prompts and sampling, read when the
    batch is submitted; ``push()``: learner weights -> engines as a new version, with timings."""

    def __init__(self, rollouts: Any, next_batch: Callable[[int], Batch],
                 sampling: Callable[[], SamplingConfig], push: Callable[[], dict[str, float]],
                 one_step: bool):
        self.rollouts, self.next_batch, self.sampling, self.push = rollouts, next_batch, sampling, push
        self.one_step = one_step
        self._in_flight: tuple[Batch, SamplingConfig, InFlight, float] | None = None
        self._ready: Generated | None = None  # collected, not trained on yet
        self._behind = False  # the learners hold weights the engines do not

    def batch(self, step: int) -> Generated:
        """Step ``step``'s batch, collected. One step off: the new weights are pushed and batch
        ``step + 1`` is submitted before this returns. ``metrics``: the wait for the batch
        (``time/generate``) and the push's timings."""
        t0 = time.perf_counter()
        if self._ready is None:
            if self._in_flight is None:
                self._submit(step)
            self._collect()
        gen, self._ready = self._ready, None
        assert gen is not None
        if gen.batch.step != step:
            raise RuntimeError(f"step {step} got the batch of step {gen.batch.step} (a checkpoint "
                               "of another run, or a pipeline bug)")
        gen.metrics = {"time/generate": time.perf_counter() - t0, **self._catch_up()}
        if self.one_step:
            self._submit(step + 1)
        return gen

    def trained(self) -> dict[str, float]:
        """The learners took a step: push its weights now unless a batch is in flight (then
        :meth:`batch` pushes them once it is collected). The push's timings, or {}."""
        self._behind = True
        return {} if self._in_flight is not None else self._catch_up()

    def drain(self) -> None:
        """Collect the batch in flight and push the newest weights (before an evaluation or
        a checkpoint)."""
        if self._in_flight is not None:
            self._collect()
        self._catch_up()

    def state(self) -> dict | None:
        """The collected batch not trained on yet, for a checkpoint (after :meth:`drain`)."""
        assert self._in_flight is None, "drain() before saving"
        return self._ready.state() if self._ready is not None else None

    def load_state(self, state: dict | None) -> None:
        self._ready = Generated.from_state(state) if state else None

    def _submit(self, step: int) -> None:
        assert self._in_flight is None and not self._behind, "submit with the newest weights only"
        batch, sampling = self.next_batch(step), self.sampling()
        job = self.rollouts.submit(batch.prompt_ids, sampling, batch.seeds)
        self._in_flight = (batch, sampling, job, time.perf_counter())

    def _collect(self) -> None:
        assert self._in_flight is not None
        batch, sampling, job, t0 = self._in_flight
        completions = self.rollouts.collect(job)
        self._in_flight = None
        self._ready = Generated(batch, sampling, completions, time.perf_counter() - t0)

    def _catch_up(self) -> dict[str, float]:
        if not self._behind:
            return {}
        assert self._in_flight is None, "no weights while a generate is in flight"
        self._behind = False
        return self.push()
