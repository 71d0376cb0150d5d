"""Weight sync, learners -> rollout engines, after each optimizer step.

Three transports, picked from the placement (``placement.weight_sync: auto``):

* ``object_store`` (CPU engines, or forced): rank 0 gathers the full state dict to CPU, one copy
  goes into Ray's object store, every engine loads it in place.
* ``ipc`` (vLLM, ``colocated``): every learner rank gathers the full weights on its own GPU and
  exports CUDA IPC handles; the handles (a few KB) are merged by GPU UUID and sent to each engine,
  which maps the learner's memory and loads it in place. No copy leaves the GPU.
* ``nccl`` (vLLM, ``separate``): learner rank 0 and the engines form one NCCL group at setup
  (learner = rank 0, engine ``i`` = rank ``1 + i``, one GPU per engine); each sync is a bucketed
  broadcast (vLLM's packed producer/consumer: fixed-size buffers, several in flight), received
  straight into the engines' weights.

Every push records the policy version on the engines, so each completion carries the version
that produced it (the learner refuses samples older than ``train.max_staleness``). A restarted
rollout worker gets the current weights through :meth:`WeightSync.restore`.
"""

from __future__ import annotations

import time

import ray


class WeightSync:
    """Base: the object-store transport (works for every engine, CPU or GPU)."""

    name = "object_store"

    def __init__(self, learners, rollouts, dtype: str | None):
        self.learners, self.rollouts, self.dtype = learners, rollouts, dtype
        self.version = 0

    def setup(self) -> None:
        """One-time connection between learners and engines (nothing for this transport)."""

    def push(self, version: int) -> dict[str, float]:
        """Send the learners' current weights to every engine as ``version``; timings."""
        t0 = time.perf_counter()
        self.version = version
        self._ref = self.learners.export_weights_ref(self.dtype)
        self.rollouts.update_weights(self._ref, version)
        return {"time/weight_sync": time.perf_counter() - t0}

    def restore(self, worker: int) -> None:
        """A restarted rollout worker loads the current weights: the object-store copy of the
        last push, or (GPU transports keep none) a fresh CPU gather."""
        ref = getattr(self, "_ref", None) or self.learners.export_weights_ref(self.dtype)
        ray.get(self.rollouts.actors[worker].update_weights.remote(ref, self.version))


class IPCSync(WeightSync):
    name = "ipc"

    def push(self, version: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.version = version
        gather = self.learners.send_weights_ipc(self.rollouts.actors, self.dtype, version)
        return {"time/weight_sync": time.perf_counter() - t0, "time/weight_gather": gather}

    def restore(self, worker: int) -> None:
        self.learners.send_weights_ipc([self.rollouts.actors[worker]], self.dtype, self.version)


class NCCLSync(WeightSync):
    name = "nccl"
    bucket_bytes = 256 << 20  # per broadcast; two buckets in flight (vLLM's packed transfer)

    def setup(self) -> None:
        """Learner rank 0 and every engine join one NCCL group (rendezvous on rank 0's node)."""
        address, port = ray.get(self.learners.actors[0].endpoint.remote())
        world = 1 + len(self.rollouts.actors)
        self.meta = self.learners.weight_meta(self.dtype)
        refs = [a.init_weight_broadcast.remote(address, port, world) for a in self.learners.actors]
        refs += [a.init_weight_transfer.remote(master_address=address, master_port=port,
                                               rank_offset=1 + i, world_size=world)
                 for i, a in enumerate(self.rollouts.actors)]
        ray.get(refs)
        self._members = list(self.rollouts.actors)

    def push(self, version: int) -> dict[str, float]:
        t0 = time.perf_counter()
        if self._members != self.rollouts.actors:  # a worker was replaced: new group
            self.setup()
        self.version = version
        info = {**self.meta, "packed": True, "packed_buffer_size_bytes": self.bucket_bytes}
        recv = [a.receive_weights.remote(info, version) for a in self.rollouts.actors]
        gather = ray.get([a.broadcast_weights.remote(self.dtype, self.bucket_bytes)
                          for a in self.learners.actors])
        ray.get(recv)
        return {"time/weight_sync": time.perf_counter() - t0, "time/weight_gather": gather[0]}


def pick_transport(engine: str, placement: str, requested: str = "auto") -> str:
    """The transport a run uses: ``requested`` unless ``auto``; see the module docstring."""
    if requested != "auto":
        return requested
    if engine != "vllm":
        return "object_store"
    return {"colocated": "ipc", "separate": "nccl"}.get(placement, "object_store")


def make_weight_sync(transport: str, learners, rollouts, dtype: str | None) -> WeightSync:
    cls = {"object_store": WeightSync, "ipc": IPCSync, "nccl": NCCLSync}[transport]
    sync = cls(learners, rollouts, dtype)
    sync.setup()
    return sync
