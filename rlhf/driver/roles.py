"""Driver-side handles for the Ray roles: one class per role, each fanning calls out to its
actors. ``LearnerGroup`` forms one torch.distributed group from N ``LearnerWorker`` actors;
``RolloutGroup`` spreads prompts over M ``RolloutWorker`` actors, gathers completions in
order, and restarts a dead worker (re-issuing its prompts, which draw the same samples because
every prompt carries its own seed)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import ray

from rlhf.learner.batching import TrainSample
from rollout.base import Completion, EngineSetup, SamplingConfig
from rollout.engines import EngineConfig
from rollout.worker import RolloutWorker

log = logging.getLogger(__name__)


def _in_bundle(pg, index: int):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LearnerGroup:
    """``bundles[rank]``: the placement-group bundle of each rank (default: bundle ``rank``).
    Actor handles are typed ``Any``: Ray's types do not know a handle's ``.remote`` methods."""

    def __init__(self, n: int, worker_kwargs: dict, num_cpus: float = 1.0, num_gpus: float = 0,
                 placement_group=None, name: str | None = None, bundles: list[int] | None = None):
        from rlhf.learner.worker import LearnerWorker

        port = _free_port()
        bundles = bundles or list(range(n))
        opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self.actors: list[Any] = []
        for rank in range(n):
            if name:  # named, so that operators (and tests) can find a learner by rank
                opts["name"] = f"{name}-learner-{rank}"
            if placement_group is not None:
                opts["scheduling_strategy"] = _in_bundle(placement_group, bundles[rank])
            self.actors.append(ray.remote(LearnerWorker).options(**opts).remote(
                **worker_kwargs, rank=rank, world_size=n, master_addr="127.0.0.1",
                master_port=port, num_threads=max(1, int(num_cpus))))
        ray.get([a.ping.remote() for a in self.actors])

    def _all(self, method: str, *args, **kwargs) -> list:
        return ray.get([getattr(a, method).remote(*args, **kwargs) for a in self.actors])

    def train(self, samples: list[TrainSample], mini_batches: int) -> dict[str, float]:
        """Split the generation batch into K mini-batches, then give each rank an interleaved
        share of every mini-batch: the K updates are the same whatever the number of ranks."""
        n = len(self.actors)
        minis = split_minibatches(samples, mini_batches)
        return _reduce_metrics(ray.get([a.train.remote([m[r::n] for m in minis])
                                        for r, a in enumerate(self.actors)]))

    def sft_step(self, samples: list[TrainSample], lr: float) -> dict[str, float]:
        n = len(self.actors)
        return _reduce_metrics(ray.get([a.sft_step.remote(samples[r::n], lr)
                                        for r, a in enumerate(self.actors)]))

    def export_weights_ref(self, dtype: str | None = None) -> ray.ObjectRef:
        """Every rank joins the gather; rank 0's full state dict stays in the object store."""
        refs = [a.export_weights.remote(dtype) for a in self.actors]
        ray.get(refs[1:])
        return refs[0]

    def weight_meta(self, dtype: str | None) -> dict[str, list]:
        return self._all("weight_meta", dtype)[0]

    def send_weights(self, transfer, dtype: str | None) -> float:
        """One GPU push (an ``rlhf.weight_sync`` transfer) from every rank; rank 0's gather
        seconds."""
        return self._all("send_weights", transfer, dtype)[0]

    def save(self, path: str) -> None:
        self._all("save", path)

    def load(self, path: str) -> int:
        return self._all("load", path)[0]

    def probe_checkpoint_dir(self, root: str, token: str) -> list[str]:
        """What each learner that cannot reach the checkpoint directory says (empty: all can)."""
        return [p for p in self._all("probe_checkpoint_dir", root, token) if p]

    def shutdown(self) -> None:
        try:
            self._all("shutdown")
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
_MAXED = {"mismatch/prob_abs_diff_max"}


def _reduce_metrics(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Combine rank metrics: global losses and counts are summed over ranks, maxima maxed, the
    rest averaged (grad_norm, lr and policy_version are already identical on every rank)."""
    keys = set().union(*per_rank)
    out = {}
    for k in keys:
        vals = [m[k] for m in per_rank if k in m]
        out[k] = sum(vals) if k in _SUMMED else max(vals) if k in _MAXED else sum(vals) / len(vals)
    return out


class RolloutGroup:
    """``on_restart(actor)`` is called with each replacement worker before its prompts are
    re-issued: the run's weight sync gives it the current weights (its ``restore``).
    ``bundles`` as in :class:`LearnerGroup`."""

    def __init__(self, n: int, engine: EngineConfig, model_path: str,
                 setup: EngineSetup = EngineSetup(), num_cpus: float = 1.0, num_gpus: float = 0,
                 max_restarts: int = 3, placement_group=None, bundles: list[int] | None = None,
                 on_restart: Callable[[ray.actor.ActorHandle], None] | None = None):
        self._spec = (engine, model_path, setup)
        self._opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        self._pg, self._bundles = placement_group, bundles or list(range(n))
        self.max_restarts = max_restarts
        self.on_restart = on_restart
        self.actors: list[Any] = [self._spawn(w) for w in range(n)]
        self.restarts = 0
        ray.get([a.ping.remote() for a in self.actors])

    def _spawn(self, w: int):
        engine, path, setup = self._spec
        opts = dict(self._opts)
        if self._pg is not None:
            opts["scheduling_strategy"] = _in_bundle(self._pg, self._bundles[w])
        return ray.remote(RolloutWorker).options(**opts).remote(
            engine, path, setup, num_threads=max(1, int(self._opts["num_cpus"])))

    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int]) -> list[Completion]:
        """Completions for every prompt (``sampling.n`` each), in prompt order. A worker that
        dies is replaced, given the current weights, and its prompts re-issued (their seeds
        make them draw the same samples)."""
        n = len(self.actors)
        shards = [list(range(w, len(prompt_token_ids), n)) for w in range(n)]
        pending = {w: self._submit(w, shard, prompt_token_ids, sampling, seeds)
                   for w, shard in enumerate(shards) if shard}
        results: dict[int, list[Completion]] = {}
        failures = 0
        while pending:
            ready, _ = ray.wait(list(pending.values()), num_returns=1)
            w = next(k for k, v in pending.items() if v == ready[0])
            try:
                comps = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                failures += 1
                if failures > self.max_restarts:
                    raise RuntimeError(f"rollout worker {w} failed {failures} times") from exc
                log.warning("rollout worker %d died (%s); restarting and re-issuing %d prompts",
                            w, type(exc).__name__, len(shards[w]))
                self._restart(w)
                pending[w] = self._submit(w, shards[w], prompt_token_ids, sampling, seeds)
                continue
            del pending[w]
            for c in comps:  # local prompt index -> global prompt index
                c.prompt_index = shards[w][c.prompt_index]
            results[w] = comps
        out = [c for comps in results.values() for c in comps]
        out.sort(key=lambda c: c.prompt_index)  # stable: keeps sample order within a prompt
        return out

    def _submit(self, w: int, shard: list[int], prompt_token_ids: list[list[int]],
                sampling: SamplingConfig, seeds: list[int]) -> ray.ObjectRef:
        return self.actors[w].generate.remote([prompt_token_ids[i] for i in shard], sampling,
                                              [seeds[i] for i in shard])

    def _restart(self, w: int) -> None:
        try:
            ray.kill(self.actors[w])
        except Exception:  # already dead
            pass
        self.actors[w] = self._spawn(w)
        self.restarts += 1
        if self.on_restart is not None:
            self.on_restart(self.actors[w])

    def sleep(self) -> None:
        ray.get([a.sleep.remote() for a in self.actors])

    def wake_up(self) -> None:
        ray.get([a.wake_up.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
