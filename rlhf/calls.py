"""Every blocking Ray call the driver makes on its actors: a timeout and an error that names the
actor and the phase. One home: the role handles (rlhf/driver/roles.py) and the weight syncs
(rlhf/weight_sync.py, which the learners import too: hence here, not in rlhf/driver/) wait
through :class:`Calls`, never with a bare ``ray.get``.

A phase's timeout follows its measured time: ``max(floor_s, factor x the slowest call of that
phase so far)``; a phase's first call (model loading, compilation, a first NCCL rendezvous) gets
``first_call_s`` (recipe section ``run.timeouts``). Waiting returns as soon as any call fails, so
a rank that died is reported at once, also while the other ranks are blocked in a collective
with it; the caller decides what follows (the rollout group restarts the worker, everything
else stops the run: ``Run.__exit__`` then prints the last checkpoint and the resume command).

Not covered: calls made inside an actor (the IPC transfer's wait on the engines gets its own
timeout from :meth:`Calls.timeout`), and scoring, which runs in the driver (its sandboxes have
their own limits).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from rlhf.config import TimeoutConfig

# Ray's errors for an actor that is gone (killed, crashed, its node lost) or unreachable, or for a
# result lost with its node
_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
         ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)


class ActorFailure(RuntimeError):
    """A call of ``actor`` (e.g. ``learner rank 1``) in ``phase`` (e.g. ``train``) failed.
    ``keys``: the failed calls' keys (:meth:`Calls.next_done`)."""

    def __init__(self, actor: str, phase: str, what: str):
        super().__init__(f"{actor} {what} during {phase}")
        self.actor, self.phase = actor, phase
        self.keys: list = []


class ActorDied(ActorFailure):
    """The actor is gone (killed, crashed, its node lost)."""


class ActorTimedOut(ActorFailure):
    """No answer within the phase's timeout (a hang, or a timeout set too low)."""


class ActorRaised(ActorFailure):
    """The actor's method raised; the original error is the ``__cause__``."""


def each(role: str, refs: Sequence[ray.ObjectRef]) -> list[tuple[str, ray.ObjectRef]]:
    """``(label, ref)`` pairs for one call per actor of a role: ``learner rank 0``, ..."""
    return [(f"{role} {i}", ref) for i, ref in enumerate(refs)]


@dataclass
class Calls:
    """The run's waits, with the slowest successful call seen per phase (seconds)."""

    cfg: TimeoutConfig = field(default_factory=TimeoutConfig)
    slowest: dict[str, float] = field(default_factory=dict)

    def timeout(self, phase: str) -> float:
        seen = self.slowest.get(phase)
        if seen is None:
            return self.cfg.first_call_s
        return max(self.cfg.floor_s, self.cfg.factor * seen)

    def get(self, phase: str, calls: Sequence[tuple[str, ray.ObjectRef]],
            keep: Collection[str] = ()) -> list:
        """The results of ``(label, ref)`` calls, in order; the first failure (or a timeout)
        raised as an :class:`ActorFailure` naming its actor and ``phase``. The calls labelled
        in ``keep`` are waited for but not fetched: their refs are returned (a failure there
        shows where the ref is used)."""
        t0 = time.monotonic()
        limit = self.timeout(phase)
        pending = dict(calls)  # label -> ref
        done: dict[str, Any] = {}
        while pending:
            label, value = self._next(phase, pending, t0 + limit, limit, keep)
            done[label] = value
            del pending[label]
        self.record(phase, time.monotonic() - t0)
        return [done[label] for label, _ in calls]

    def next_done(self, phase: str, pending: dict[Any, tuple[str, ray.ObjectRef]],
                  deadline: float) -> tuple[Any, Any]:
        """The key and result of the first of ``pending`` (key -> (label, ref)) to finish
        before ``deadline`` (``time.monotonic()``); an :class:`ActorFailure` otherwise, whose
        ``keys`` are the failed call's key (on a timeout: every pending key)."""
        by_label = {label: key for key, (label, _) in pending.items()}
        try:
            label, value = self._next(phase, {lab: ref for lab, ref in pending.values()},
                                      deadline, self.timeout(phase))
        except ActorTimedOut as exc:
            exc.keys = list(pending)
            raise
        except ActorFailure as exc:
            exc.keys = [by_label[exc.actor]]
            raise
        return by_label[label], value

    def record(self, phase: str, seconds: float) -> None:
        self.slowest[phase] = max(seconds, self.slowest.get(phase, 0.0))

    def _next(self, phase: str, pending: dict[str, ray.ObjectRef], deadline: float,
              limit: float, keep: Collection[str] = ()) -> tuple[str, Any]:
        refs = list(pending.values())
        ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, deadline - time.monotonic()),
                            fetch_local=False)
        if not ready:
            raise ActorTimedOut(", ".join(pending), phase, f"gave no answer in {limit:.0f} s "
                                f"({self._why(phase)})")
        label = next(lab for lab, ref in pending.items() if ref == ready[0])
        if label in keep:
            return label, ready[0]
        try:
            return label, ray.get(ready[0])
        except _GONE as exc:
            raise ActorDied(label, phase, f"died ({type(exc).__name__})") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise ActorRaised(label, phase, f"raised {type(cause).__name__}: {cause}") from exc

    def _why(self, phase: str) -> str:
        c, seen = self.cfg, self.slowest.get(phase)
        if seen is None:
            return f"a first call: run.timeouts.first_call_s={c.first_call_s:g}"
        return (f"max(run.timeouts.floor_s={c.floor_s:g}, run.timeouts.factor={c.factor:g} x "
                f"the slowest {phase} so far, {seen:.1f} s)")
