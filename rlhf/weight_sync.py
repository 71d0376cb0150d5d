"""Weight sync, learners -> rollout engines, after each optimizer step: the whole feature.

Three transports, picked from the placement (``placement.weight_sync: auto``):

* ``object_store`` (CPU engines, or forced): rank 0 gathers the full state dict to CPU, one copy
  goes into Ray's object store, every engine loads it in place (``update_weights``).
* ``ipc`` (vLLM, ``colocated``): every learner rank gathers the full weights on its own GPU and
  exports CUDA IPC handles; the handles (a few KB) are merged by GPU UUID and sent to each engine,
  which maps the learner's memory and loads it in place. No copy leaves the GPU.
* ``nccl`` (vLLM, ``separate``): learner rank 0 and the engines form one NCCL group at setup
  (learner = rank 0, engine ``i`` = rank ``1 + i``, one GPU per engine); each sync is a bucketed
  broadcast (vLLM's packed producer/consumer: fixed-size buffers, several in flight), received
  straight into the engines' weights.

The three sides of a transport and where they live:

* driver side, here: :class:`ObjectStoreSync`, :class:`IPCSync`, :class:`NCCLSync`. The run calls
  ``connect`` once, ``push`` after every step, and gives ``restore`` to the rollout group as its
  restart hook (a restarted worker gets the current weights before its prompts are re-issued).
* learner side, here: :class:`IPCTransfer` and :class:`NCCLTransfer` say what one push is; every
  learner rank gathers its weights in ``LearnerWorker.send_weights`` and hands them to
  ``transfer.send``, with the rank's :class:`Channel` (its NCCL group). vLLM's trainer-side API
  is imported here and nowhere else in rlhf.
* engine side, behind the ``Engine`` protocol (rollout/base.py): ``update_weights`` (object
  store), ``init_weight_transfer`` and ``receive_weights`` (ipc, nccl).

One sync, step by step (each step runs on CPU in tests/test_weight_sync.py, with stand-in actors
and a stand-in vLLM; the transfers themselves run on GPU: benchmarks/gpu_proof.py):

* nccl ``connect``: rank 0's node address and a free port; the names, dtypes and shapes of what
  will be sent, read from the learner's state-dict keys and shapes (nothing is gathered); learner
  rank 0 and every engine join the group concurrently. A replaced engine makes the next ``push``
  form the group again.
* nccl ``push``: every engine starts receiving (names, shapes, bucket size, version); the
  learners gather tensor by tensor from their shards as rank 0 fills the buckets (a collective
  per tensor; no rank holds the full model), rank 0 broadcasts the buckets.
* ipc ``push``: every learner rank gathers on its GPU and exports handles; the engines receive
  them with the version.
* object store ``push``: rank 0's CPU copy goes to every engine; it is kept (here only) so that
  ``restore`` reuses it. GPU transports keep no copy: their ``restore`` sends to the one restarted
  engine over IPC, or (nccl) loads a fresh CPU gather.

Every push records the policy version on the engines, so each completion carries the version
that produced it (the learner refuses samples older than ``train.max_staleness``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ray

from rlhf.calls import Calls, each
from rlhf.config import GPU_TRANSPORTS

LEARNER, ROLLOUT = "learner rank", "rollout worker"  # the labels of the roles' actors


# ---- driver side -------------------------------------------------------------------------
class ObjectStoreSync:
    """The object-store transport (works for every engine, CPU or GPU); the base of the others.

    ``learners`` is a :class:`rlhf.driver.roles.LearnerGroup`; ``connect`` takes the
    :class:`rlhf.driver.roles.RolloutGroup` whose current ``actors`` every push reaches."""

    def __init__(self, learners: Any, dtype: str | None):
        self.learners, self.dtype = learners, dtype
        self.calls: Calls = learners.calls  # the run's timeouts (rlhf/calls.py)
        self.rollouts: Any = None
        self.version = 0
        self._last: ray.ObjectRef | None = None  # the last push's copy (object store only)

    def connect(self, rollouts: Any) -> None:
        """One-time connection between learners and engines (nothing more for this transport)."""
        self.rollouts = rollouts

    def push(self, version: int) -> dict[str, float]:
        """Send the learners' current weights to every engine as ``version``; timings."""
        t0 = time.perf_counter()
        self.version = version
        self._last = self.learners.export_weights_ref(self.dtype)
        self.calls.get("weight push", each(ROLLOUT, [a.update_weights.remote(self._last, version)
                                                     for a in self.rollouts.actors]))
        return {"time/weight_sync": time.perf_counter() - t0}

    def restore(self, actor: Any) -> None:
        """A restarted rollout worker loads the current weights: the last push's copy, or
        (before any push, and for the GPU transports, which keep none) a fresh CPU gather,
        labelled with the learners' version (with ``train.async_mode=one_step`` the learners
        may be a version ahead of the last push)."""
        if self._last is not None:
            ref, version = self._last, self.version
        else:
            ref, version = self.learners.export_weights_ref(self.dtype), self.learners.version()
        self.calls.get("weight push", [(_label(self.rollouts, actor),
                                        actor.update_weights.remote(ref, version))])


class IPCSync(ObjectStoreSync):
    def push(self, version: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.version = version
        gather = self.learners.send_weights(IPCTransfer(list(self.rollouts.actors), version,
                                                        self.calls.timeout("weight push")),
                                            self.dtype)
        return {"time/weight_sync": time.perf_counter() - t0, "time/weight_gather": gather}

    def restore(self, actor: Any) -> None:
        self.learners.send_weights(IPCTransfer([actor], self.version,
                                               self.calls.timeout("weight push")), self.dtype)


class NCCLSync(ObjectStoreSync):
    bucket_bytes = 256 << 20  # per broadcast; two buckets in flight (vLLM's packed transfer)

    def connect(self, rollouts: Any) -> None:
        """Learner rank 0 and every engine join one NCCL group (rendezvous on rank 0's node;
        rank 0 first leaves the group it was in, if any)."""
        self.rollouts = rollouts
        address, port = self.calls.get("connect", [(f"{LEARNER} 0",
                                                    self.learners.actors[0].endpoint.remote())])[0]
        group = NCCLGroup(address, port, world_size=1 + len(rollouts.actors))
        self.meta = self.learners.weight_meta(self.dtype)
        refs = each(LEARNER, [a.init_weight_transfer.remote(group) for a in self.learners.actors])
        refs += each(ROLLOUT, [a.init_weight_transfer.remote(address, port, 1 + i, group.world_size)
                               for i, a in enumerate(rollouts.actors)])
        self.calls.get("connect", refs)
        self._members = list(rollouts.actors)

    def push(self, version: int) -> dict[str, float]:
        t0 = time.perf_counter()
        if self._members != list(self.rollouts.actors):  # a worker was replaced: new group
            self.connect(self.rollouts)
        self.version = version
        info = {**self.meta, "packed": True, "packed_buffer_size_bytes": self.bucket_bytes}
        recv = each(ROLLOUT, [a.receive_weights.remote(info, version) for a in self.rollouts.actors])
        gather = self.learners.send_weights(NCCLTransfer(self.bucket_bytes), self.dtype, also=recv)
        return {"time/weight_sync": time.perf_counter() - t0, "time/weight_gather": gather}


def _label(rollouts: Any, actor: Any) -> str:
    return f"{ROLLOUT} {rollouts.actors.index(actor)}" if actor in rollouts.actors else ROLLOUT


_SYNCS: dict[str, type[ObjectStoreSync]] = {"object_store": ObjectStoreSync, "ipc": IPCSync,
                                            "nccl": NCCLSync}


def pick_transport(engine_transports: frozenset[str], placement: str, requested: str = "auto",
                   ) -> str:
    """The transport a run uses: ``requested`` unless ``auto``; with ``auto``, the GPU transport
    of the placement (``GPU_TRANSPORTS``: ipc when colocated, nccl when separate) when the
    engine can receive it (its section's ``weight_transports``), else the object store."""
    if requested != "auto":
        return requested
    preferred = next((t for t, mode in GPU_TRANSPORTS.items() if mode == placement), None)
    return preferred if preferred in engine_transports else "object_store"


def make_weight_sync(transport: str, learners: Any, dtype: str | None) -> ObjectStoreSync:
    """The driver side of ``transport``; ``connect`` it once the rollout group exists."""
    return _SYNCS[transport](learners, dtype)


# ---- learner side (inside every LearnerWorker rank) ----------------------------------------
@dataclass(frozen=True)
class NCCLGroup:
    """Where learner rank 0 and the engines meet: rank 0's node, a free port there, and the group
    size (1 learner + the engines)."""

    address: str
    port: int
    world_size: int


@dataclass
class Channel:
    """One learner rank's weight-sync state: its rank and, on rank 0, the NCCL group it joined."""

    rank: int
    group: Any = field(default=None, repr=False)

    def join(self, group: NCCLGroup) -> None:
        """Rank 0 leaves the group it was in (after an engine restart), then joins ``group``
        as its rank 0 (blocks until the engines join too)."""
        if self.rank != 0:
            return
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

        self.leave()
        self.group = NCCLWeightTransferEngine.trainer_init(
            {"master_address": group.address, "master_port": group.port,
             "world_size": group.world_size})

    def leave(self) -> None:
        """Destroy this rank's NCCL communicator, if it has one (vLLM's ``PyNcclCommunicator``
        has ``destroy``; a torch process group is destroyed with ``destroy_process_group``)."""
        old, self.group = self.group, None
        if old is None:
            return
        destroy = getattr(old, "destroy", None)
        if callable(destroy):
            destroy()
        else:
            import torch.distributed as dist

            if isinstance(old, dist.ProcessGroup):
                dist.destroy_process_group(old)


@dataclass(frozen=True)
class IPCTransfer:
    """CUDA IPC handles of this rank's full GPU copy to ``engines`` (those sharing the learners'
    GPUs) as policy ``version``: vLLM merges the ranks' handles by GPU UUID, each engine maps the
    memory and loads it in place. The tensors must live until the call returns."""

    engines: list
    version: int
    timeout_s: float | None = None  # the driver's weight-push timeout (rlhf/calls.py)

    def send(self, weights: Iterable[tuple[str, Any]], channel: Channel) -> None:
        from dataclasses import asdict

        from vllm.distributed.weight_transfer.ipc_engine import IPCWeightTransferEngine

        def send_mode(info: Any) -> None:
            ray.get([e.receive_weights.remote(asdict(info), self.version) for e in self.engines],
                    timeout=self.timeout_s)

        held = dict(weights)  # the engines map this rank's memory: all of it, until they return
        IPCWeightTransferEngine.trainer_send_weights(iter(held.items()), {"send_mode": send_mode})


@dataclass(frozen=True)
class NCCLTransfer:
    """A bucketed broadcast from rank 0 over the group it joined (the engines must be receiving
    concurrently), streamed: each tensor is gathered from the shards as the bucket fills, so
    rank 0 holds one bucket and one tensor, not the model; other ranks only take part in the
    gathers."""

    bucket_bytes: int

    def send(self, weights: Iterable[tuple[str, Any]], channel: Channel) -> None:
        if channel.rank != 0:
            for _ in weights:  # join every gather, keep nothing
                pass
            return
        import torch
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

        NCCLWeightTransferEngine.trainer_send_weights(
            iter(weights), {"group": channel.group, "packed": True,
                                    "packed_buffer_size_bytes": self.bucket_bytes})
        if torch.cuda.is_available():
            torch.cuda.synchronize()


Transfer = IPCTransfer | NCCLTransfer
