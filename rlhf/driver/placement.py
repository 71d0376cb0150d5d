"""Where the actors run: the Ray connection, the placement groups, and the roles started in them
(learners, the weight sync between learners and engines, rollout workers), in one function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rlhf.calls import Calls
from rlhf.config import PlacementConfig, Recipe, RolloutConfig, TrainConfig
from rlhf.driver.roles import LearnerGroup, RolloutGroup
from rlhf.weight_sync import ObjectStoreSync, make_weight_sync, pick_transport
from rollout.base import EngineSetup

# settings every actor must see, also on a cluster (e.g. NCCL_NVLS_ENABLE=0, HF_HUB_OFFLINE=1)
_PASSED_ENV = ("NCCL_", "VLLM_", "HF_", "TRANSFORMERS_", "TORCH_", "NVSHMEM_", "CUDA_LAUNCH")


def start_ray(train: TrainConfig, rollout: RolloutConfig, address: str | None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``, set inside ``ray job submit``), else start a
    local instance sized for the actors, on loopback; a no-op when Ray is already up. On a
    cluster this driver's node keeps the address the cluster knows it by (never 127.0.0.1,
    which the other nodes cannot reach)."""
    import ray

    if ray.is_initialized():
        return
    passed = {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ENV)}
    env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", **passed}}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=True)
        return
    cpus = train.num_learners * train.num_cpus + rollout.num_workers * rollout.num_cpus
    # A new local instance (even where `ray start` left a cluster file), on loopback.
    ray.init(address="local", num_cpus=max(int(cpus + 0.999), 1), include_dashboard=False,
             runtime_env=env, log_to_driver=True, _node_ip_address="127.0.0.1")


@dataclass
class Placement:
    """Ray resources per role: a placement group (None: plain actors) with each role's bundles,
    and each actor's GPU share."""

    pg: Any = None
    learner_bundles: list[int] | None = None
    rollout_bundles: list[int] | None = None
    learner_gpus: float = 0.0
    rollout_gpus: float = 0.0


def placement_plan(p: PlacementConfig, train: TrainConfig, rollout: RolloutConfig,
                   timeout_s: float = 1800.0) -> Placement:
    """``local``: CPU actors. ``separate``: one placement group, the learners' bundles first,
    then the engines' (different GPUs). ``colocated``: one bundle (GPU) per learner/engine pair,
    each taking half of it."""
    n, m = train.num_learners, rollout.num_workers
    if p.mode == "local":
        return Placement()
    import ray
    from ray.util.placement_group import placement_group

    if p.mode == "separate":
        bundles = ([{"GPU": p.learner_gpus, "CPU": train.num_cpus}] * n +
                   [{"GPU": p.rollout_gpus, "CPU": rollout.num_cpus}] * m)
        plan = Placement(None, list(range(n)), list(range(n, n + m)), p.learner_gpus, p.rollout_gpus)
    else:
        if n != m:
            raise ValueError("placement.mode=colocated needs train.num_learners == rollout.num_workers")
        bundles = [{"GPU": 1, "CPU": train.num_cpus + rollout.num_cpus}] * n
        plan = Placement(None, list(range(n)), list(range(n)), 0.5, 0.5)
    plan.pg = placement_group(bundles, strategy="PACK")
    try:
        ray.get(plan.pg.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise RuntimeError(f"placement.mode={p.mode}: the cluster did not grant the bundles "
                           f"{bundles} in {timeout_s:g} s (run.timeouts.first_call_s); `ray status` "
                           "shows what it has") from None
    return plan


def start_roles(r: Recipe, model_path: str, context_len: int,
                ) -> tuple[LearnerGroup, ObjectStoreSync, RolloutGroup]:
    """The learners, the weight sync between them and the engines, and the rollout workers
    (whose restart hook is the sync's ``restore``), placed and connected."""
    calls = Calls(r.run.timeouts)
    place = placement_plan(r.placement, r.train, r.rollout, r.run.timeouts.first_call_s)
    learner_kwargs = dict(model_path=model_path, model_cfg=r.model, train_cfg=r.train,
                          loss_cfg=r.loss, lm_head_fp32=r.precision.lm_head_fp32, seed=r.run.seed)
    # CPU actors load side by side; on GPUs the engines start once the learners hold their
    # memory (vLLM sizes its KV cache from the free memory it sees while it profiles)
    together = r.placement.mode == "local"
    learners = LearnerGroup(r.train.num_learners, learner_kwargs, r.train.num_cpus,
                            place.learner_gpus, place.pg, name=f"m1rl-{r.run.name}",
                            bundles=place.learner_bundles, calls=calls, wait=not together)
    engine = r.rollout.engine
    transport = pick_transport(engine.weight_transports, r.placement.mode, r.placement.weight_sync)
    setup = EngineSetup(dtype=r.model.dtype, lm_head_fp32=r.precision.lm_head_fp32,
                        seed=r.run.seed, sleep_mode=r.placement.engines_sleep,
                        weight_transfer=None if transport == "object_store" else transport,
                        context_len=context_len)
    sync = make_weight_sync(transport, learners, "bfloat16" if r.model.dtype == "bfloat16" else None)
    rollouts = RolloutGroup(r.rollout.num_workers, engine, model_path, setup, r.rollout.num_cpus,
                            place.rollout_gpus, r.rollout.max_restarts, place.pg,
                            place.rollout_bundles, on_restart=sync.restore, calls=calls,
                            wait=not together)
    if together:
        learners.ready()
        rollouts.ready()
    sync.connect(rollouts)
    return learners, sync, rollouts
