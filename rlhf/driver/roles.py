"""Driver-side handles for the Ray roles: one class per role, each fanning calls out to its
actors. ``LearnerGroup`` forms one torch.distributed group from N ``LearnerWorker`` actors;
``RolloutGroup`` spreads prompts over M ``RolloutWorker`` actors (``submit`` returns at once
with an :class:`InFlight` batch, ``collect`` waits for it: the one-step-off pipeline of
rlhf/driver/pipeline.py trains in between), gathers completions in order, and restarts a dead
worker (re-issuing its prompts, which draw the same samples because every prompt carries its
own seed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from rlhf.calls import ActorDied, ActorTimedOut, Calls, each
from rlhf.learner.batching import TrainSample
from rollout.base import Completion, EngineSetup, SamplingConfig
from rollout.engines import EngineConfig
from rollout.worker import RolloutWorker

log = logging.getLogger(__name__)


def _in_bundle(pg, index: int):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)


class LearnerGroup:
    """``bundles[rank]``: the placement-group bundle of each rank (default: bundle ``rank``).
    The group meets on rank 0's node: the actors are created, rank 0 reports its address and a
    free port there (``endpoint``), then every rank joins. ``calls``: the run's timeouts.
    Actor handles are typed ``Any``: Ray's types do not know a handle's ``.remote`` methods."""

    def __init__(self, n: int, worker_kwargs: dict, num_cpus: float = 1.0, num_gpus: float = 0,
                 placement_group=None, name: str | None = None, bundles: list[int] | None = None,
                 calls: Calls | None = None, wait: bool = True):
        from rlhf.learner.worker import LearnerWorker

        self.calls = calls or Calls()
        bundles = bundles or list(range(n))
        opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self.actors: list[Any] = []
        for rank in range(n):
            if name:  # named, so that operators (and tests) can find a learner by rank
                opts["name"] = f"{name}-learner-{rank}"
            if placement_group is not None:
                opts["scheduling_strategy"] = _in_bundle(placement_group, bundles[rank])
            self.actors.append(ray.remote(LearnerWorker).options(**opts).remote(
                **worker_kwargs, rank=rank, world_size=n, num_threads=max(1, int(num_cpus))))
        self.address = ""  # the group's rendezvous, on rank 0's node (set by ready)
        if wait:
            self.ready()

    def ready(self) -> LearnerGroup:
        """Wait for the ranks to start, then form the group (``wait=False`` defers this, so
        that other roles start while these load)."""
        address, port = self._get("start", [self.actors[0].endpoint.remote()])[0]
        self.address = f"{address}:{port}"
        self._all("join", "join", address, port)
        return self

    def _get(self, phase: str, refs: list) -> list:
        return self.calls.get(phase, each("learner rank", refs))

    def _all(self, phase: str, method: str, *args, **kwargs) -> list:
        return self._get(phase, [getattr(a, method).remote(*args, **kwargs) for a in self.actors])

    def train(self, samples: list[TrainSample], mini_batches: int) -> dict[str, float]:
        """Split the generation batch into K mini-batches, then give each rank an interleaved
        share of every mini-batch: the K updates are the same whatever the number of ranks."""
        n = len(self.actors)
        minis = split_minibatches(samples, mini_batches)
        return _reduce_metrics(self._get("train", [a.train.remote([m[r::n] for m in minis])
                                                   for r, a in enumerate(self.actors)]))

    def reset_optimizer(self) -> None:
        self._all("train", "reset_optimizer")

    def sft_step(self, samples: list[TrainSample], lr: float) -> dict[str, float]:
        n = len(self.actors)
        return _reduce_metrics(self._get("sft", [a.sft_step.remote(samples[r::n], lr)
                                                 for r, a in enumerate(self.actors)]))

    def export_weights_ref(self, dtype: str | None = None) -> ray.ObjectRef:
        """Every rank joins the gather; rank 0's full state dict stays in the object store."""
        refs = [a.export_weights.remote(dtype) for a in self.actors]
        return self.calls.get("weight push", each("learner rank", refs),
                              keep={"learner rank 0"})[0]

    def weight_meta(self, dtype: str | None) -> dict[str, list]:
        return self._all("weight push", "weight_meta", dtype)[0]

    def send_weights(self, transfer, dtype: str | None,
                     also: list[tuple[str, ray.ObjectRef]] = ()) -> float:  # type: ignore[assignment]
        """One GPU push (an ``rlhf.weight_sync`` transfer) from every rank, waited on with the
        ``also`` calls (the engines receiving it: a dead engine is reported at once, not after
        rank 0's broadcast times out); rank 0's gather seconds."""
        refs = [a.send_weights.remote(transfer, dtype) for a in self.actors]
        return self.calls.get("weight push", [*each("learner rank", refs), *also])[0]

    def version(self) -> int:
        """The policy version: optimizer steps of RL training (the same on every rank)."""
        return self._all("load", "policy_version")[0]

    def save(self, path: str) -> None:
        self._all("save", "save", path)

    def load(self, path: str) -> int:
        return self._all("load", "load", path)[0]

    def probe_checkpoint_dir(self, root: str, token: str) -> list[str]:
        """What each learner that cannot reach the checkpoint directory says (empty: all can)."""
        return [p for p in self._all("start", "probe_checkpoint_dir", root, token) if p]

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Leave the process group where a rank still answers, then stop every actor (also a
        rank blocked in a collective with a dead one)."""
        try:
            ray.wait([a.shutdown.remote() for a in self.actors], num_returns=len(self.actors),
                     timeout=grace_s)
        finally:
            for a in self.actors:
                ray.kill(a)


def split_minibatches(samples: list, k: int) -> list[list]:
    """K contiguous, nearly equal mini-batches (fewer when there are fewer samples)."""
    k = max(1, min(k, len(samples)))
    n = len(samples)
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [samples[bounds[i]:bounds[i + 1]] for i in range(k)]


_SUMMED = {"loss", "sft_loss", "mismatch/tokens"}  # each rank holds its share
_MAXED = {"mismatch/prob_abs_diff_max", "train/staleness_max"}


def _reduce_metrics(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Combine rank metrics: global losses and counts are summed over ranks, maxima maxed, the
    rest averaged (grad_norm, lr and policy_version are already identical on every rank)."""
    keys = set().union(*per_rank)
    out = {}
    for k in keys:
        vals = [m[k] for m in per_rank if k in m]
        out[k] = sum(vals) if k in _SUMMED else max(vals) if k in _MAXED else sum(vals) / len(vals)
    return out


@dataclass
class InFlight:
    """A submitted generation batch (:meth:`RolloutGroup.submit`): its arguments, each worker's
    shard of prompt indices, and the worker -> result reference of every shard not collected."""

    prompt_token_ids: list[list[int]]
    sampling: SamplingConfig
    seeds: list[int]
    shards: list[list[int]]
    t0: float = 0.0  # time.monotonic() at submission
    pending: dict[int, tuple[str, ray.ObjectRef]] = field(default_factory=dict)


class RolloutGroup:
    """``on_restart(actor)`` is called with each replacement worker before its prompts are
    re-issued: the run's weight sync gives it the current weights (its ``restore``).
    ``bundles`` as in :class:`LearnerGroup`; ``calls``: the run's timeouts; ``wait=False``:
    :meth:`ready` waits for the workers to start."""

    role = "rollout worker"

    def __init__(self, n: int, engine: EngineConfig, model_path: str,
                 setup: EngineSetup = EngineSetup(), num_cpus: float = 1.0, num_gpus: float = 0,
                 max_restarts: int = 3, placement_group=None, bundles: list[int] | None = None,
                 on_restart: Callable[[ray.actor.ActorHandle], None] | None = None,
                 calls: Calls | None = None, wait: bool = True):
        self._spec = (engine, model_path, setup)
        self._opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._pg, self._bundles = placement_group, bundles or list(range(n))
        self.max_restarts = max_restarts
        self.on_restart = on_restart
        self.calls = calls or Calls()
        self.actors: list[Any] = [self._spawn(w) for w in range(n)]
        self.restarts = 0
        if wait:
            self.ready()

    def ready(self) -> RolloutGroup:
        self._all("start", "ping")
        return self

    def _all(self, phase: str, method: str, *args) -> list:
        return self.calls.get(phase, each(self.role, [getattr(a, method).remote(*args)
                                                      for a in self.actors]))

    def _spawn(self, w: int):
        engine, path, setup = self._spec
        opts = dict(self._opts)
        if self._pg is not None:
            opts["scheduling_strategy"] = _in_bundle(self._pg, self._bundles[w])
        return ray.remote(RolloutWorker).options(**opts).remote(
            engine, path, setup, num_threads=max(1, int(self._opts["num_cpus"])))

    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int]) -> list[Completion]:
        """Completions for every prompt (``sampling.n`` each), in prompt order: :meth:`submit`
        then :meth:`collect`."""
        return self.collect(self.submit(prompt_token_ids, sampling, seeds))

    def submit(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
               seeds: list[int]) -> InFlight:
        """Start generating (prompts spread round-robin over the workers) and return at once;
        :meth:`collect` waits for the completions."""
        n = len(self.actors)
        shards = [list(range(w, len(prompt_token_ids), n)) for w in range(n)]
        job = InFlight(prompt_token_ids, sampling, seeds, shards, t0=time.monotonic())
        job.pending = {w: self._submit(w, shard, job) for w, shard in enumerate(shards) if shard}
        return job

    def collect(self, job: InFlight) -> list[Completion]:
        """The completions of a submitted batch, in prompt order. A worker that dies or hangs
        past the timeout (counted from the submission) is replaced, given the current weights
        (``on_restart``), and its prompts re-issued (their seeds make them draw the same
        samples)."""
        pending, shards, t0 = job.pending, job.shards, job.t0
        deadline = t0 + self.calls.timeout("generate")
        results: dict[int, list[Completion]] = {}
        failures = 0
        while pending:
            try:
                w, comps = self.calls.next_done("generate", pending, deadline)
            except (ActorDied, ActorTimedOut) as exc:
                failures += 1
                if failures > self.max_restarts:
                    exc.add_note(f"rollout workers failed {failures} times in this generate "
                                 f"(rollout.max_restarts={self.max_restarts})")
                    raise
                for w in exc.keys:
                    log.warning("%s; restarting it and re-issuing its %d prompts", exc,
                                len(shards[w]))
                    self._restart(w)
                    pending[w] = self._submit(w, shards[w], job)
                deadline = time.monotonic() + self.calls.timeout("generate")
                continue
            del pending[w]
            for c in comps:  # local prompt index -> global prompt index
                c.prompt_index = shards[w][c.prompt_index]
            results[w] = comps
        if not failures:
            self.calls.record("generate", time.monotonic() - t0)
        out = [c for comps in results.values() for c in comps]
        out.sort(key=lambda c: c.prompt_index)  # stable: keeps sample order within a prompt
        return out

    def _submit(self, w: int, shard: list[int], job: InFlight) -> tuple[str, ray.ObjectRef]:
        return f"{self.role} {w}", self.actors[w].generate.remote(
            [job.prompt_token_ids[i] for i in shard], job.sampling, [job.seeds[i] for i in shard])

    def _restart(self, w: int) -> None:
        try:
            ray.kill(self.actors[w])
        except Exception:  # already dead
            pass
        self.actors[w] = self._spawn(w)
        self.restarts += 1
        self.calls.get("start", [(f"{self.role} {w}", self.actors[w].ping.remote())])
        if self.on_restart is not None:
            self.on_restart(self.actors[w])

    def sleep(self) -> None:
        self._all("sleep", "sleep")

    def wake_up(self) -> None:
        self._all("wake", "wake_up")

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
