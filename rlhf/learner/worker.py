"""The learner role: one member of a torch.distributed group training the policy.

Each ``LearnerWorker`` gets its rank and the group's rendezvous address from the driver
(:class:`rlhf.driver.roles.LearnerGroup`), so no torchrun is needed. With more than one learner (or
on a GPU) the policy is sharded with FSDP2 (``fully_shard``): bf16 compute with float32 master
weights and optimizer state on GPU, float32 on CPU.

One ``train`` call = one generation batch: ``old_logprobs`` once, then K mini-batch updates.
Samples of an older policy version (``train.async_mode=one_step``) are refused beyond
``train.max_staleness``; their age is the metric ``train/staleness`` and their tokens get the
truncated importance weight of rlhf/learner/losses.py (``is_weight_mean``).
The loss is normalised over the whole mini-batch across ranks (global token-mean or seq-mean),
whatever the micro-batching.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from rlhf.config import LoraConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig
from rlhf.learner import checkpoint as ckpt
from rlhf.learner.attention import use_packed_attention
from rlhf.learner.batching import (
    MicroBatch,
    PackedBatch,
    TrainSample,
    collate,
    pack,
    plan_micro_batches,
    plan_packs,
)
from rlhf.learner.losses import behaviour_weight, bind_policy_loss
from rlhf.learner.memory import checkpoint_layers, layers_to_checkpoint
from rlhf.learner.policy import PolicyModel, base_model, compile_layers
from rlhf.learner.stats import mismatch_stats
from rlhf.weight_sync import Channel, NCCLGroup, Transfer


class LearnerWorker:
    """Built in two steps, because the group's address is rank 0's: the actor is created (no
    model yet), rank 0 reports :meth:`endpoint` (its node's address and a free port there), then
    every rank joins that rendezvous (:meth:`join`) and builds its shard of the policy."""

    def __init__(self, model_path: str, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 loss_cfg: LossConfig, lm_head_fp32: bool, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_threads: int | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.model_path, self.lm_head_fp32 = model_path, lm_head_fp32
        self.cfg, self.model_cfg, self.loss_cfg = train_cfg, model_cfg, loss_cfg
        self.loss_fn = bind_policy_loss(loss_cfg)
        self.device = torch.device(f"cuda:{torch.cuda.current_device()}"
                                   if torch.cuda.is_available() else "cpu")
        self.version = 0
        self.channel = Channel(rank)  # this rank's weight-sync state (rlhf/weight_sync.py)

    def join(self, master_addr: str, master_port: int) -> int:
        """Join the learner group at rank 0's ``master_addr:master_port`` (every rank at once:
        it blocks until all have joined), then build the policy, reference and optimizer."""
        torch.manual_seed(self.seed + self.rank)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            _use_gloo_interface(_node_address())
            dist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}",
                                    rank=self.rank, world_size=self.world_size)
        train_cfg, loss_cfg = self.cfg, self.loss_cfg
        self.fsdp = train_cfg.fsdp == "on" or (train_cfg.fsdp == "auto" and (
            self.world_size > 1 or self.device.type == "cuda"))
        self.policy, self.pad_id = self._build_policy(self.model_path, self.lm_head_fp32)
        self.ref = (self._build_reference(self.model_path, self.lm_head_fp32)
                    if loss_cfg.uses_reference else None)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        o: OptimConfig = train_cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=(o.betas[0], o.betas[1]),
                                           eps=o.eps, weight_decay=o.weight_decay)
        warm = o.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        return self.rank

    # ---- construction ----------------------------------------------------------------
    def _load_lm(self, model_path: str):
        from transformers import AutoConfig, AutoModelForCausalLM

        dtype = torch.float32  # master weights; FSDP2 casts to bf16 for compute on GPU
        lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        pad = AutoConfig.from_pretrained(model_path).pad_token_id
        if self.cfg.packing:  # packed rows need the varlen attention (rlhf/learner/attention.py)
            use_packed_attention(lm)
        return lm, (pad if pad is not None else 0)

    def _build_policy(self, model_path: str, lm_head_fp32: bool):
        lm, pad_id = self._load_lm(model_path)
        if self.model_cfg.lora is not None:
            lm = _apply_lora(lm, self.model_cfg.lora)
        layers = base_model(lm).model.layers
        self.checkpointed_layers = self._checkpointed(base_model(lm).config, lm, len(layers))
        checkpoint_layers(lm, layers, self.checkpointed_layers)
        if self.cfg.compile == "on" or (self.cfg.compile == "auto" and self.device.type == "cuda"):
            compile_layers(layers)
        policy = PolicyModel(lm, lm_head_fp32=lm_head_fp32, chunk_size=self.cfg.logprob_chunk)
        policy.to(self.device)
        if self.fsdp:
            _shard(policy, self.device, self.model_cfg.dtype)
        return policy, pad_id

    def _checkpointed(self, config, lm, num_layers: int) -> int:
        setting = self.model_cfg.gradient_checkpointing
        if setting != "auto":
            return num_layers if setting else 0
        if self.device.type != "cuda":
            return 0
        total = torch.cuda.get_device_properties(self.device).total_memory
        params = sum(p.numel() for p in lm.parameters())
        return layers_to_checkpoint(config, self.cfg.micro_batch_tokens, total, params,
                                    self.world_size, self.cfg.logprob_chunk)

    def _build_reference(self, model_path: str, lm_head_fp32: bool) -> PolicyModel:
        lm, _ = self._load_lm(model_path)
        ref = PolicyModel(lm, lm_head_fp32=lm_head_fp32, chunk_size=self.cfg.logprob_chunk)
        ref.to(self.device).eval().requires_grad_(False)
        if self.fsdp:  # sharded like the policy: each rank holds 1/N, gathered layer by layer
            _shard(ref, self.device, self.model_cfg.dtype)
        return ref

    # ---- forward helpers ----------------------------------------------------------------
    def _plan(self, samples: list[TrainSample]) -> list[list[int]]:
        """Micro-batches of this rank (packed: total tokens within the budget; padded: count x
        longest), padded to the group's count so that every rank joins every FSDP collective
        (an empty plan entry runs a zero-weight dummy batch)."""
        plan_fn = plan_packs if self.cfg.packing else plan_micro_batches
        plan = plan_fn([len(s.input_ids) for s in samples], self.cfg.micro_batch_tokens)
        n = torch.tensor([len(plan)])
        if self.world_size > 1:
            dist.all_reduce(n, op=dist.ReduceOp.MAX)
        return plan + [[]] * (int(n) - len(plan))

    def _batch(self, samples, idx) -> tuple[MicroBatch | PackedBatch, float]:
        build = pack if self.cfg.packing else (lambda s, i: collate(s, i, self.pad_id))
        if idx:
            return build(samples, idx), 1.0
        dummy = TrainSample(input_ids=[self.pad_id, self.pad_id], prompt_len=1)
        return build([dummy], [0]), 0.0

    @torch.no_grad()
    def compute_logprobs(self, samples: list[TrainSample], model: PolicyModel | None = None,
                         ) -> list[list[float]]:
        """Log-probabilities of every sample's response tokens (one copy to the host at the end)."""
        model = model or self.policy
        parts: list[tuple[list[int], torch.Tensor]] = []
        for idx in self._plan(samples):
            mb, _ = self._batch(samples, idx)
            lp, _ = model.micro_forward(mb, self.device)
            if idx:
                parts.append((idx, lp[mb.valid.to(lp.device)]))  # [T_sel] row-major
        out: list[list[float]] = [[] for _ in samples]
        if not parts:
            return out
        flat = torch.cat([v for _, v in parts]).float().cpu().tolist()
        pos = 0
        for idx, _ in parts:
            for i in idx:
                n = samples[i].response_len
                out[i], pos = flat[pos:pos + n], pos + n
        return out

    # ---- training -----------------------------------------------------------------------
    def train(self, minibatches: list[list[TrainSample]]) -> dict[str, float]:
        """One generation batch, already split into K mini-batches (this rank's share of
        each): old_logprobs, then one optimizer update per mini-batch. The first update's own
        forward pass runs before any change to the weights, so its log-probabilities are the
        old ones: the separate pass covers mini-batches 2..K only (none when K = 1)."""
        t0 = time.perf_counter()
        samples = [s for mb in minibatches for s in mb]
        self._check_staleness(samples)
        self.policy.train()
        later = [s for mb in minibatches[1:] for s in mb]
        if later:
            for s, lp in zip(later, self.compute_logprobs(later)):
                s.old_logprobs = lp
        if self.ref is not None:
            for s, lp in zip(samples, self.compute_logprobs(samples, self.ref)):
                s.ref_logprobs = lp
        t_old = time.perf_counter() - t0
        acc: dict[str, list[float]] = defaultdict(list)
        for i, mini in enumerate(minibatches):
            for key, v in self._update(mini, old_is_current=i == 0).items():
                acc[key].append(v)
        metrics = _mismatch_metrics([s for s in samples if s.policy_version == self.version])
        metrics.update(self._staleness(samples))
        metrics["time/old_logprobs"] = t_old
        metrics.update({k: sum(v) / len(v) for k, v in acc.items()})
        self.version += 1
        metrics["policy_version"] = self.version
        metrics["time/train"] = time.perf_counter() - t0
        if self.device.type == "cuda":  # hand cached activation memory back (colocated engines)
            torch.cuda.empty_cache()
            metrics["memory/learner_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return metrics

    def _check_staleness(self, samples: list[TrainSample]) -> None:
        stale = sorted({s.policy_version for s in samples
                        if self.version - s.policy_version > self.cfg.max_staleness})
        if stale:
            raise ValueError(f"refusing samples from policy versions {stale}: the learner is at "
                             f"version {self.version} and train.max_staleness is "
                             f"{self.cfg.max_staleness}")

    def _staleness(self, samples: list[TrainSample]) -> dict[str, float]:
        """Policy versions between the learner and this rank's samples: mean and max."""
        ages = [self.version - s.policy_version for s in samples] or [0]
        return {"train/staleness": sum(ages) / len(ages), "train/staleness_max": max(ages)}

    def _global_denom(self, mini: list[TrainSample], agg: str) -> float:
        local = sum(s.response_len for s in mini) if agg == "token-mean" else len(mini)
        t = torch.tensor([float(local)])
        if self.world_size > 1:
            dist.all_reduce(t)
        return max(float(t), 1.0)

    def _update(self, mini: list[TrainSample], old_is_current: bool = False) -> dict[str, float]:
        """One optimizer step over a mini-batch. Metrics stay on the device until the end of
        the step (one host synchronisation per update). ``old_is_current``: the samples carry
        no old_logprobs; the forward pass's own (detached) values are the old ones, and are
        stored on the samples for the mismatch metrics."""
        denom = self._global_denom(mini, self.loss_cfg.agg)
        zero = torch.zeros((), device=self.device)
        sums: dict[str, torch.Tensor] = defaultdict(lambda: zero)
        kept: list[tuple[list[int], torch.Tensor]] = []
        for idx in self._plan(mini):
            mb, weight = self._batch(mini, idx)
            lp, ent = self.policy.micro_forward(mb, self.device)
            mask = mb.resp_mask.to(self.device)
            if old_is_current:
                old = lp.detach()
                if idx:
                    kept.append((idx, old[mb.valid.to(old.device)]))
            else:
                old = mb.response_tensor([mini[i].old_logprobs or [] for i in idx] or [[0.0]]).to(self.device)
            inputs: dict[str, Any] = {"denom": denom}
            stale = torch.tensor([mini[i].policy_version < self.version for i in idx] or [False])
            if stale.any():  # samples of an older policy (async_mode=one_step): losses.py
                rollout = mb.response_tensor([mini[i].rollout_logprobs for i in idx]).to(self.device)
                w = behaviour_weight(old, rollout, stale, self.cfg.stale_is_cap)
                inputs["is_weight"] = w
                smask = mask * stale.unsqueeze(-1).to(mask.device)
                sums["stale_tokens"] = sums["stale_tokens"] + smask.sum() * weight
                sums["is_weight_mean"] = sums["is_weight_mean"] + (w * smask).sum() * weight
                sums["is_weight_capped_frac"] = sums["is_weight_capped_frac"] + (
                    (w >= self.cfg.stale_is_cap) * smask).sum() * weight
            if self.ref is not None:  # only a loss that uses a reference model takes it
                inputs["ref_logprobs"] = mb.response_tensor(
                    [mini[i].ref_logprobs or [] for i in idx] or [[0.0]]).to(self.device)
            loss, m = self.loss_fn(lp, old, mb.advantages.to(self.device), mask, **inputs)
            # FSDP averages gradients over ranks; the loss is already a global mean.
            (loss * weight * self.world_size).backward()
            n_tok = mask.sum() * weight
            sums["loss"] = sums["loss"] + loss.detach() * weight
            sums["tokens"] = sums["tokens"] + n_tok
            for key, v in m.items():
                sums[key] = sums[key] + v * n_tok
            sums["entropy"] = sums["entropy"] + (ent * mask).sum() * weight
        grad_norm = self._clip_grads()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = list(sums)
        values = dict(zip(names, torch.stack([sums[k].float() for k in names]).tolist(), strict=True))
        tokens = max(values.pop("tokens"), 1.0)
        stale_tokens = max(values.pop("stale_tokens", 0.0), 1.0)  # the is_weight_* means' tokens
        out = {k: v / (stale_tokens if k.startswith("is_weight") else tokens)
               for k, v in values.items() if k != "loss"}
        out.update(loss=values["loss"], grad_norm=grad_norm, lr=float(self.scheduler.get_last_lr()[0]))
        if kept:
            self._store_old(mini, kept)
        return out

    @staticmethod
    def _store_old(mini: list[TrainSample], kept: list[tuple[list[int], torch.Tensor]]) -> None:
        flat = torch.cat([v for _, v in kept]).float().cpu().tolist()
        pos = 0
        for idx, _ in kept:
            for i in idx:
                n = mini[i].response_len
                mini[i].old_logprobs, pos = flat[pos:pos + n], pos + n

    def reset_optimizer(self) -> None:
        """Forget AdamW's moments and step counts (between the warm-up and RL)."""
        self.optimizer.state.clear()

    def sft_step(self, samples: list[TrainSample], lr: float) -> dict[str, float]:
        """One supervised step: maximise the log-likelihood of the response tokens."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.policy.train()
        denom = self._global_denom(samples, "token-mean")
        total = torch.zeros((), device=self.device)
        for idx in self._plan(samples):
            mb, weight = self._batch(samples, idx)
            lp, _ = self.policy.micro_forward(mb, self.device)
            loss = -(lp * mb.resp_mask.to(self.device)).sum() / denom
            (loss * weight * self.world_size).backward()
            total = total + loss.detach() * weight
        grad_norm = self._clip_grads()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for g in self.optimizer.param_groups:
            g["lr"] = self.scheduler.get_last_lr()[0]
        return {"sft_loss": float(total), "grad_norm": grad_norm}

    def _clip_grads(self) -> float:
        """Clip the global gradient norm to ``train.optim.grad_clip``; the norm before clipping
        (a DTensor under FSDP: its full value)."""
        return float(_full(torch.nn.utils.clip_grad_norm_(
            [p for p in self.policy.parameters() if p.requires_grad], self.cfg.optim.grad_clip)))

    # ---- weights and checkpoints --------------------------------------------------------
    def _full_state(self, with_optimizer: bool):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(self.policy, self.optimizer if with_optimizer else [], options=opts)

    def export_weights(self, dtype: str | None = None) -> dict[str, torch.Tensor] | None:
        """Full Hugging Face-named weights (LoRA merged) on rank 0, None on other ranks.
        Every rank must call it (the gather is collective)."""
        model_sd, _ = self._full_state(with_optimizer=False)
        if self.rank != 0:
            return None
        sd = _hf_names(model_sd, self.model_cfg.lora)
        if dtype:
            sd = {k: v.to(getattr(torch, dtype)) for k, v in sd.items()}
        return sd

    # ---- weight sync to the engines on GPU (the transports: rlhf/weight_sync.py) ---------
    def _gpu_weights(self, dtype: str | None, gather_s: list[float] | None = None,
                     ) -> Iterator[tuple[str, torch.Tensor]]:
        """Full Hugging Face-named weights on this rank's device, one tensor at a time, in
        :meth:`weight_meta`'s order: each is gathered from its FSDP shards when it is reached
        (a collective: every rank must run the iterator to its end), LoRA merged, cast to the
        engines' dtype. What a consumer drops is freed: no rank need hold the full model.
        ``gather_s`` receives the seconds spent gathering."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        sd = _tensors(get_model_state_dict(self.policy))  # sharded (DTensors): nothing gathered
        cast = getattr(torch, dtype) if dtype else None
        for key, value in sd.items():
            t0 = time.perf_counter()
            name = _hf_key(key, self.model_cfg.lora)
            if name is None:
                continue
            full = _merged(key, _full(value), lambda k: _full(sd[k]), self.model_cfg.lora)
            full = (full.to(cast) if cast else full).contiguous()
            if gather_s is not None:
                gather_s.append(time.perf_counter() - t0)
            yield name, full

    def weight_meta(self, dtype: str | None) -> dict[str, list]:
        """Names, dtypes and shapes of what :meth:`send_weights` sends, in its order (what an
        NCCL receiver allocates), read from this rank's state-dict keys and global shapes:
        nothing is gathered."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        sd = _tensors(get_model_state_dict(self.policy))  # sharded (DTensors): no collective
        kept = [(name, v) for k, v in sd.items()
                if (name := _hf_key(k, self.model_cfg.lora)) is not None]
        return {"names": [name for name, _ in kept],
                "dtype_names": [dtype or str(v.dtype).removeprefix("torch.") for _, v in kept],
                "shapes": [list(v.shape) for _, v in kept]}

    def endpoint(self) -> tuple[str, int]:
        """This node's address and a free port on it: the rendezvous of the learner group
        (asked of rank 0) and of the NCCL weight group."""
        import socket

        address = _node_address()
        with socket.socket() as s:
            s.bind((address, 0))
            return address, s.getsockname()[1]

    def init_weight_transfer(self, group: NCCLGroup) -> None:
        """Rank 0 joins the NCCL group with the engines (which join concurrently)."""
        self.channel.join(group)

    def send_weights(self, transfer: Transfer, dtype: str | None) -> float:
        """One push to the engines: this rank's weights, gathered tensor by tensor
        (:meth:`_gpu_weights`; every rank must call it), through ``transfer``'s transport;
        seconds spent gathering."""
        gather_s: list[float] = []
        transfer.send(self._gpu_weights(dtype, gather_s), self.channel)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return sum(gather_s)

    def save(self, path: str) -> None:
        """This rank's shard of model + optimizer, its RNG, and (rank 0) the scheduler and
        version, into the step checkpoint ``path`` (rlhf/learner/checkpoint.py; collective)."""
        ckpt.save(Path(path), self.policy, self.optimizer, self.scheduler, self.version, self.rank)

    def load(self, path: str) -> int:
        """Restore what :meth:`save` wrote (collective); the policy version."""
        self.version = ckpt.load(Path(path), self.policy, self.optimizer, self.scheduler, self.rank)
        return self.version

    def probe_checkpoint_dir(self, root: str, token: str) -> str | None:
        """None when this actor reaches the driver's checkpoint directory, else why not."""
        import socket

        import ray

        who = (f"learner rank {self.rank} on node {ray.util.get_node_ip_address()} "
               f"({socket.gethostname()})")
        return ckpt.probe(Path(root), Path(token), who)

    def ping(self) -> int:
        return self.rank

    def policy_version(self) -> int:
        return self.version

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


# ---- helpers -------------------------------------------------------------------------------
def _node_address() -> str:
    """The address Ray knows this node by (``--node-ip-address``); loopback outside Ray."""
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"


def _use_gloo_interface(address: str) -> None:
    """Make gloo use the network interface that holds ``address`` (the one the other ranks
    reach this node by), unless the user chose one (``GLOO_SOCKET_IFNAME``). Left alone, gloo
    binds whatever this host's name resolves to: on many hosts a loopback alias (127.0.1.1)
    that the other hosts cannot reach. NCCL picks its own interfaces."""
    import psutil

    name = next((nic for nic, addrs in psutil.net_if_addrs().items()
                 if any(a.address == address for a in addrs)), None)
    if name is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", name)


def _mismatch_metrics(samples: list[TrainSample]) -> dict[str, float]:
    """M1's train/inference mismatch on this rank's sampled tokens (rlhf/learner/stats.py):
    the learner's old_logprobs against the sampler's rollout_logprobs. The learner passes its
    fresh samples only: a stale one's two differ by a policy update as well as by numerics."""
    learner = torch.tensor([x for s in samples for x in (s.old_logprobs or [])], dtype=torch.float64)
    sampler = torch.tensor([x for s in samples if s.old_logprobs for x in s.rollout_logprobs],
                           dtype=torch.float64)
    if learner.numel() == 0 or learner.shape != sampler.shape:
        return {}
    return {f"mismatch/{k}": v for k, v in mismatch_stats(learner, sampler).items()}


def _apply_lora(lm, cfg: LoraConfig):
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    return get_peft_model(lm, PeftLora(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                       target_modules=list(cfg.target_modules), bias="none"))


def _tensors(sd: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """A model state dict (torch types its values loosely: a model's are tensors only)."""
    return cast(dict[str, torch.Tensor], dict(sd))


def _full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a collective under FSDP); a plain tensor as it is."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


def _hf_key(key: str, lora: LoraConfig | None) -> str | None:
    """A policy state-dict key -> its Hugging Face name; None for a LoRA factor (merged into
    its base weight by :func:`_hf_names`)."""
    k = key.removeprefix("lm.")
    if lora is None:
        return k
    if "lora_" in k:
        return None
    return k.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _merged(key: str, value: torch.Tensor, get: Callable[[str], torch.Tensor],
            lora: LoraConfig | None) -> torch.Tensor:
    """``value`` of policy key ``key`` with its LoRA delta merged in (W + alpha/r * B @ A; the
    factors fetched with ``get``) where it is an adapted base weight; else ``value``."""
    if lora is None or ".base_layer." not in key:
        return value
    a = get(key.replace(".base_layer.weight", ".lora_A.default.weight"))
    b = get(key.replace(".base_layer.weight", ".lora_B.default.weight"))
    return value + lora.alpha / lora.r * (b.float() @ a.float()).to(value.dtype)


def _hf_names(sd: dict[str, torch.Tensor], lora: LoraConfig | None) -> dict[str, torch.Tensor]:
    """Policy state dict -> Hugging Face names; LoRA deltas merged (W + alpha/r * B @ A)."""
    return {name: _merged(k, v, sd.__getitem__, lora) for k, v in sd.items()
            if (name := _hf_key(k, lora)) is not None}


def _shard(policy: PolicyModel, device: torch.device, dtype: str) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy()  # fully_shard's default: no casting (CPU)
    if device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=getattr(torch, dtype) if dtype != "float32" else torch.bfloat16,
                                  reduce_dtype=torch.float32)
    for layer in base_model(policy.lm).model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(policy, mp_policy=mp)
