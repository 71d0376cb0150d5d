"""Weight-sync transports: which one a recipe gets, and the NCCL / IPC call protocol between
learner and engine actors (Ray actors standing in for the GPU roles; the transfers themselves
run on GPU: benchmarks/gpu_proof.py)."""

import pytest
import ray

from rlhf.config import RecipeError, parse_recipe
from rlhf.weight_sync import IPCSync, NCCLSync, make_weight_sync, pick_transport


@pytest.mark.parametrize("engine,placement,requested,expected", [
    ("vllm", "colocated", "auto", "ipc"), ("vllm", "separate", "auto", "nccl"),
    ("hf", "local", "auto", "object_store"), ("vllm", "local", "auto", "object_store"),
    ("vllm", "separate", "object_store", "object_store")])
def test_transport_follows_placement(engine, placement, requested, expected):
    assert pick_transport(engine, placement, requested) == expected


def test_transport_that_cannot_work_is_a_recipe_error():
    base = {"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}}
    with pytest.raises(RecipeError, match="weight_sync=nccl needs placement.mode=separate"):
        parse_recipe({**base, "rollout": {"engine": "vllm"},
                      "placement": {"mode": "colocated", "weight_sync": "nccl"}})
    with pytest.raises(RecipeError, match="weight_sync=ipc needs .* rollout.engine=vllm"):
        parse_recipe({**base, "placement": {"mode": "colocated", "weight_sync": "ipc"}})


@ray.remote
class FakeLearner:
    def __init__(self, rank):
        self.rank, self.calls = rank, []

    def endpoint(self):
        return "127.0.0.1", 4321

    def weight_meta(self, dtype):
        return {"names": ["w"], "dtype_names": [dtype], "shapes": [[2, 2]]}

    def init_weight_broadcast(self, address, port, world):
        self.calls.append(("init", address, port, world))

    def broadcast_weights(self, dtype, bucket):
        self.calls.append(("send", dtype, bucket))
        return 0.01

    def send_weights_ipc(self, engines, dtype, version):
        if self.rank == 0:
            ray.get([e.receive_weights.remote({"ipc_handles": ["..."]}, version) for e in engines])
        return 0.02

    def log(self):
        return self.calls


@ray.remote
class FakeEngine:
    def __init__(self):
        self.calls = []

    def init_weight_transfer(self, **info):
        self.calls.append(("init", info))

    def receive_weights(self, info, version):
        self.calls.append(("recv", info, version))
        return 0.0

    def log(self):
        return self.calls


class Group:
    def __init__(self, actors):
        self.actors = actors

    def weight_meta(self, dtype):
        return ray.get([a.weight_meta.remote(dtype) for a in self.actors])[0]

    def send_weights_ipc(self, engines, dtype, version):
        return ray.get([a.send_weights_ipc.remote(engines, dtype, version) for a in self.actors])[0]


def test_nccl_sync_ranks_engines_after_the_learner_and_regroups_after_a_restart(local_ray):
    learners = Group([FakeLearner.remote(r) for r in range(2)])
    rollouts = Group([FakeEngine.remote() for _ in range(2)])
    sync = make_weight_sync("nccl", learners, rollouts, "bfloat16")
    assert isinstance(sync, NCCLSync)
    m = sync.push(1)
    assert m["time/weight_gather"] == 0.01 and m["time/weight_sync"] > 0
    inits = [ray.get(e.log.remote())[0] for e in rollouts.actors]
    assert [i[1]["rank_offset"] for i in inits] == [1, 2]
    assert {(i[1]["world_size"], i[1]["master_port"]) for i in inits} == {(3, 4321)}
    assert ray.get(learners.actors[0].log.remote()) == [
        ("init", "127.0.0.1", 4321, 3), ("send", "bfloat16", NCCLSync.bucket_bytes)]
    recv = ray.get(rollouts.actors[1].log.remote())[1]
    assert recv[2] == 1 and recv[1]["names"] == ["w"] and recv[1]["packed"]
    assert recv[1]["packed_buffer_size_bytes"] == NCCLSync.bucket_bytes

    rollouts.actors[1] = FakeEngine.remote()  # a replaced worker: the group is formed again
    sync.push(2)
    new_log = ray.get(rollouts.actors[1].log.remote())
    assert [c[0] for c in new_log] == ["init", "recv"] and new_log[1][2] == 2
    assert [c[0] for c in ray.get(rollouts.actors[0].log.remote())] == ["init", "recv", "init", "recv"]


def test_ipc_sync_sends_every_version_and_restores_one_worker(local_ray):
    learners = Group([FakeLearner.remote(0)])
    rollouts = Group([FakeEngine.remote() for _ in range(2)])
    sync = make_weight_sync("ipc", learners, rollouts, None)
    assert isinstance(sync, IPCSync)
    sync.push(3)
    sync.restore(1)
    assert [c[2] for c in ray.get(rollouts.actors[0].log.remote())] == [3]
    assert [c[2] for c in ray.get(rollouts.actors[1].log.remote())] == [3, 3]


def test_object_store_restore_reuses_the_last_push(local_ray):
    class Learners:
        exports = 0

        def export_weights_ref(self, dtype):
            self.exports += 1
            return ray.put({"w": self.exports})

    @ray.remote
    class Engine:
        def __init__(self):
            self.loaded = []

        def update_weights(self, sd, version):
            self.loaded.append((sd["w"], version))

        def log(self):
            return self.loaded

    class Rollouts(Group):
        def update_weights(self, ref, version):
            ray.get([a.update_weights.remote(ref, version) for a in self.actors])

    learners, rollouts = Learners(), Rollouts([Engine.remote(), Engine.remote()])
    sync = make_weight_sync("object_store", learners, rollouts, None)
    sync.push(4)
    rollouts.actors[1] = Engine.remote()  # restarted
    sync.restore(1)
    assert learners.exports == 1  # no second gather
    assert ray.get(rollouts.actors[1].log.remote()) == [(1, 4)]
