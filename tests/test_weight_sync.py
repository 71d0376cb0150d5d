"""Weight-sync transports: which one a recipe gets, and every step of the NCCL / IPC / object-store
protocol between learner and engine actors. Ray actors stand in for the GPU roles and a stand-in
vLLM records the trainer-side calls, so the driver side, the learner side (rlhf/weight_sync.py's
transfers, run by the real group handle) and the engine calls all run here; the transfers
themselves run on GPU (benchmarks/gpu_proof.py)."""

import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import ray
import torch

from rlhf.calls import Calls
from rlhf.config import CispoLoss, RecipeError, parse_recipe
from rlhf.driver.roles import LearnerGroup
from rlhf.weight_sync import (
    Channel,
    IPCSync,
    IPCTransfer,
    NCCLSync,
    make_weight_sync,
    pick_transport,
)
from rollout.engines import HFEngineConfig, VLLMEngineConfig


@pytest.mark.parametrize("engine,placement,requested,expected", [
    ("vllm", "colocated", "auto", "ipc"), ("vllm", "separate", "auto", "nccl"),
    ("hf", "local", "auto", "object_store"), ("vllm", "local", "auto", "object_store"),
    ("hf", "colocated", "auto", "object_store"), ("hf", "separate", "auto", "object_store"),
    ("vllm", "separate", "object_store", "object_store")])
def test_transport_follows_placement(engine, placement, requested, expected):
    section = {"hf": HFEngineConfig, "vllm": VLLMEngineConfig}[engine]
    assert pick_transport(section.weight_transports, placement, requested) == expected


def test_transport_that_cannot_work_is_a_recipe_error():
    base = {"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}}
    with pytest.raises(RecipeError, match="weight_sync=nccl needs placement.mode=separate"):
        parse_recipe({**base, "rollout": {"engine": "vllm"},
                      "placement": {"mode": "colocated", "weight_sync": "nccl"}})
    with pytest.raises(RecipeError, match="weight_sync=ipc needs .* rollout.engine=vllm"):
        parse_recipe({**base, "placement": {"mode": "colocated", "weight_sync": "ipc"}})


# ---- a stand-in for vLLM's trainer-side weight-transfer API --------------------------------
@dataclass
class FakeIPCInfo:
    names: list
    handles: list


def install_fake_vllm(setitem=sys.modules.__setitem__) -> list:
    """Put vLLM's IPC and NCCL trainer engines, as rlhf/weight_sync.py calls them, into
    sys.modules (through ``setitem``); returns the list that records every call."""
    calls: list = []

    class IPCWeightTransferEngine:
        @staticmethod
        def trainer_send_weights(weights, args):
            names = [name for name, _ in weights]
            calls.append(("ipc_send", names))
            args["send_mode"](FakeIPCInfo(names, [f"handle:{n}" for n in names]))

    class NCCLWeightTransferEngine:
        @staticmethod
        def trainer_init(info):
            calls.append(("nccl_init", dict(info)))
            return FakeGroup(f"group-{len(calls)}", calls)

        @staticmethod
        def trainer_send_weights(weights, args):
            calls.append(("nccl_send", [(n, list(t.shape)) for n, t in weights],
                          {**args, "group": str(args["group"])}))

    ipc = types.ModuleType("vllm.distributed.weight_transfer.ipc_engine")
    ipc.IPCWeightTransferEngine = IPCWeightTransferEngine
    nccl = types.ModuleType("vllm.distributed.weight_transfer.nccl_engine")
    nccl.NCCLWeightTransferEngine = NCCLWeightTransferEngine
    for name in ("vllm", "vllm.distributed", "vllm.distributed.weight_transfer"):
        setitem(name, sys.modules.get(name) or types.ModuleType(name))
    setitem(ipc.__name__, ipc)
    setitem(nccl.__name__, nccl)
    return calls


class FakeGroup(str):
    """A communicator (vLLM's PyNcclCommunicator) that records its ``destroy``."""

    def __new__(cls, name, calls):
        group = super().__new__(cls, name)
        group.calls = calls
        return group

    def destroy(self):
        self.calls.append(("nccl_destroy", str(self)))


@ray.remote
class FakeLearner:
    """A learner rank with a 2x2 weight: the real Channel and transfers, a stand-in vLLM."""

    def __init__(self, rank):
        self.vllm_calls = install_fake_vllm()
        self.channel = Channel(rank)
        self.calls = []

    def endpoint(self):
        return "127.0.0.1", 4321

    def weight_meta(self, dtype):
        return {"names": ["w"], "dtype_names": [dtype], "shapes": [[2, 2]]}

    def init_weight_transfer(self, group):
        self.calls.append(("init", group.address, group.port, group.world_size))
        self.channel.join(group)

    def send_weights(self, transfer, dtype):
        self.calls.append(("gather", dtype))
        transfer.send(iter([("w", torch.zeros(2, 2))]), self.channel)  # as the learner streams
        return 0.01

    def export_weights(self, dtype):
        self.calls.append(("export", dtype))
        return {"w": len(self.calls)}

    def policy_version(self):
        return 7  # optimizer steps taken: ahead of the last push in a one-step-off run

    def log(self):
        return self.calls, self.vllm_calls


@ray.remote
class FakeEngine:
    """A rollout worker as the transports call it."""

    def __init__(self):
        self.calls = []

    def init_weight_transfer(self, master_address, master_port, rank_offset, world_size):
        self.calls.append(("init", master_address, master_port, rank_offset, world_size))

    def receive_weights(self, info, version):
        self.calls.append(("recv", info, version))
        return 0.0

    def update_weights(self, sd, version):
        self.calls.append(("load", sd["w"], version))
        return 0.0

    def log(self):
        return self.calls


def _learners(n):
    group = object.__new__(LearnerGroup)  # the real fan-out, over stand-in ranks
    group.actors = [FakeLearner.remote(r) for r in range(n)]
    group.calls = Calls()
    return group


def _rollouts(n):
    return SimpleNamespace(actors=[FakeEngine.remote() for _ in range(n)])


def test_nccl_sync_ranks_engines_after_the_learner_and_regroups_after_a_restart(local_ray):
    learners, rollouts = _learners(2), _rollouts(2)
    sync = make_weight_sync("nccl", learners, "bfloat16")
    assert isinstance(sync, NCCLSync)
    sync.connect(rollouts)
    m = sync.push(1)
    assert m["time/weight_gather"] == 0.01 and m["time/weight_sync"] > 0
    inits = [ray.get(e.log.remote())[0] for e in rollouts.actors]
    assert inits == [("init", "127.0.0.1", 4321, 1, 3), ("init", "127.0.0.1", 4321, 2, 3)]
    (calls0, vllm0), (calls1, vllm1) = ray.get([a.log.remote() for a in learners.actors])
    assert calls0 == calls1 == [("init", "127.0.0.1", 4321, 3), ("gather", "bfloat16")]
    # rank 0 alone joins the group and broadcasts, packed, over the group it joined
    assert vllm0 == [("nccl_init", {"master_address": "127.0.0.1", "master_port": 4321,
                                    "world_size": 3}),
                     ("nccl_send", [("w", [2, 2])],
                      {"group": "group-1", "packed": True,
                       "packed_buffer_size_bytes": NCCLSync.bucket_bytes})]
    assert vllm1 == []
    recv = ray.get(rollouts.actors[1].log.remote())[1]
    assert recv[0] == "recv" and recv[2] == 1
    assert recv[1] == {"names": ["w"], "dtype_names": ["bfloat16"], "shapes": [[2, 2]],
                       "packed": True, "packed_buffer_size_bytes": NCCLSync.bucket_bytes}

    rollouts.actors[1] = FakeEngine.remote()  # a replaced worker: the group is formed again
    sync.push(2)
    new_log = ray.get(rollouts.actors[1].log.remote())
    assert [c[0] for c in new_log] == ["init", "recv"] and new_log[1][2] == 2
    assert [c[0] for c in ray.get(rollouts.actors[0].log.remote())] == ["init", "recv", "init", "recv"]
    _, vllm0 = ray.get(learners.actors[0].log.remote())
    # the old group is destroyed before the new one is formed, and the push uses the new one
    assert [c[0] for c in vllm0] == ["nccl_init", "nccl_send", "nccl_destroy", "nccl_init",
                                     "nccl_send"]
    assert vllm0[2][1] == "group-1" and vllm0[4][2]["group"] == "group-4"


def test_ipc_sync_sends_every_version_and_restores_one_worker(local_ray):
    learners, rollouts = _learners(1), _rollouts(2)
    sync = make_weight_sync("ipc", learners, None)
    assert isinstance(sync, IPCSync)
    sync.connect(rollouts)
    sync.push(3)
    sync.restore(rollouts.actors[1])
    handles = {"names": ["w"], "handles": ["handle:w"]}  # vLLM's update info, as a dict
    assert ray.get(rollouts.actors[0].log.remote()) == [("recv", handles, 3)]
    assert ray.get(rollouts.actors[1].log.remote()) == [("recv", handles, 3)] * 2
    calls, vllm = ray.get(learners.actors[0].log.remote())
    assert calls == [("gather", None)] * 2 and vllm == [("ipc_send", ["w"])] * 2


def test_object_store_restore_reuses_the_last_push(local_ray):
    learners, rollouts = _learners(2), _rollouts(2)
    sync = make_weight_sync("object_store", learners, None)
    sync.connect(rollouts)
    sync.push(4)
    rollouts.actors[1] = FakeEngine.remote()  # restarted
    sync.restore(rollouts.actors[1])
    assert [ray.get(a.log.remote())[0] for a in learners.actors] == [[("export", None)]] * 2
    assert ray.get(rollouts.actors[1].log.remote()) == [("load", 1, 4)]  # rank 0's copy, no second gather
    assert ray.get(rollouts.actors[0].log.remote()) == [("load", 1, 4)]


def test_a_fresh_gather_for_a_restarted_worker_carries_the_learners_version(local_ray):
    """No copy kept (before any push; the GPU transports): the restarted worker loads the
    learners' weights now, labelled with their version, not the last push's."""
    learners, rollouts = _learners(1), _rollouts(1)
    sync = make_weight_sync("nccl", learners, None)
    sync.rollouts, sync.version = rollouts, 4  # as after push(4), without forming a group
    sync.restore(rollouts.actors[0])
    assert ray.get(rollouts.actors[0].log.remote()) == [("load", 1, 7)]


# ---- the real learner: what it sends, and the metadata it announces ------------------------
def _worker(model_dir, lora=None, port=29741):
    from rlhf.config import LoraConfig, ModelConfig, TrainConfig
    from rlhf.learner.worker import LearnerWorker

    cfg = ModelConfig(path=model_dir, lora=LoraConfig(**lora) if lora else None)
    w = LearnerWorker(model_dir, cfg, TrainConfig(), CispoLoss(), True)
    w.join("127.0.0.1", port)
    return w


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory):
    from rlhf.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tied") / "model", hidden_size=32,
                                num_layers=2, num_heads=2, num_kv_heads=1, tie_word_embeddings=True))


@pytest.mark.parametrize("lora", [None, {"r": 2, "alpha": 4}], ids=["full", "lora"])
def test_weight_meta_is_what_send_weights_sends_without_a_gather(tied_model_dir, lora,
                                                                 monkeypatch, local_ray):
    import torch.distributed.checkpoint.state_dict as dcp_sd

    vllm_calls = install_fake_vllm(lambda name, m: monkeypatch.setitem(sys.modules, name, m))
    w = _worker(tied_model_dir, lora, port=29741 + bool(lora))
    try:
        sent = dict(w._gpu_weights("bfloat16"))
        gathers = []
        real = dcp_sd.get_model_state_dict
        monkeypatch.setattr(dcp_sd, "get_model_state_dict",
                            lambda *a, **kw: gathers.append(kw.get("options")) or real(*a, **kw))
        meta = w.weight_meta("bfloat16")
        assert gathers == [None]  # the sharded state dict: no full_state_dict gather
        assert meta == {"names": list(sent), "dtype_names": ["bfloat16"] * len(sent),
                        "shapes": [list(t.shape) for t in sent.values()]}
        assert len(sent) > 10 and not any("lora" in n for n in meta["names"])
        engine = FakeEngine.remote()
        assert w.send_weights(IPCTransfer([engine], version=7), "bfloat16") >= 0.0
        assert vllm_calls == [("ipc_send", meta["names"])]
        (_, info, version), = ray.get(engine.log.remote())
        assert version == 7 and info["names"] == meta["names"]
    finally:
        w.shutdown()


def _stream(worker):
    """A push's weights as :class:`NCCLTransfer` takes them: rank 0 keeps them, rank 1 drains
    the iterator; how many tensors were gathered when the first came out."""
    gathered: list[float] = []
    it = worker._gpu_weights(None, gathered)
    first = [next(it)]
    at_first = len(gathered)
    if worker.rank != 0:
        return at_first, sum(1 for _ in it)
    return at_first, dict(first + list(it))


def test_sharded_learners_stream_the_push_one_gathered_tensor_at_a_time(local_ray, tied_model_dir):
    from rlhf.config import LoraConfig, ModelConfig, TrainConfig

    kwargs = dict(model_path=tied_model_dir, model_cfg=ModelConfig(path=tied_model_dir,
                                                                   lora=LoraConfig(r=2, alpha=4)),
                  train_cfg=TrainConfig(fsdp="on"), loss_cfg=CispoLoss(), lm_head_fp32=True)
    group = LearnerGroup(2, kwargs)
    try:
        (first0, sent), (first1, drained) = ray.get(
            [a.__ray_call__.remote(_stream) for a in group.actors])
        assert first0 == first1 == 1  # gathered as reached, not the whole model up front
        full = ray.get(group.export_weights_ref())  # LoRA merged, gathered to rank 0's CPU
        assert list(sent) == list(full) and drained == len(full) - 1
        assert all(torch.equal(sent[k], full[k]) for k in full)
    finally:
        group.shutdown()


def test_sharded_learners_announce_the_gathered_names_and_shapes(local_ray, tied_model_dir):
    from rlhf.config import LoraConfig, ModelConfig, TrainConfig

    kwargs = dict(model_path=tied_model_dir, model_cfg=ModelConfig(path=tied_model_dir,
                                                                   lora=LoraConfig(r=2, alpha=4)),
                  train_cfg=TrainConfig(fsdp="on"), loss_cfg=CispoLoss(), lm_head_fp32=True)
    group = LearnerGroup(2, kwargs)
    try:
        meta = group.weight_meta(None)
        full = ray.get(group.export_weights_ref())
        assert meta == {"names": list(full), "dtype_names": ["float32"] * len(full),
                        "shapes": [list(t.shape) for t in full.values()]}
    finally:
        group.shutdown()
