"""A transformers generation engine (CPU: tests, laptops; options: rollout/engines.py).

It runs its own decode loop over a KV cache instead of ``model.generate`` because RL needs
what ``generate`` does not give directly: the *raw* log-probability of each sampled token (before
temperature / top-p), per-prompt seeds (a re-issued prompt draws the same samples on any worker)
and M1's repetition stop as its own finish reason.

Shapes (rollout/base.py): ``N`` rows (prompt x sample) in a decode batch, ``T_prompt`` padded
prompt length, ``V`` vocabulary.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rollout.base import Completion, EngineSetup, FinishReason, SamplingConfig, model_stop_ids
from rollout.engines import HFEngineConfig
from rollout.repetition import RepetitionTracker

_NO_TRANSFER = ("the transformers engine loads weights only through update_weights (the object "
                "store); CUDA IPC and NCCL transfers (placement.weight_sync ipc, nccl) need the "
                "vllm engine")


class HFEngine:
    def __init__(self, model_path: str, options: HFEngineConfig | None = None,
                 setup: EngineSetup | None = None):
        from transformers import AutoModelForCausalLM

        options, setup = options or HFEngineConfig(), setup or EngineSetup()
        self.device = torch.device("cpu")
        model: Any = AutoModelForCausalLM.from_pretrained(model_path,
                                                          dtype=getattr(torch, setup.dtype))
        self.model = model.to(self.device).eval()
        self.lm_head_fp32 = setup.lm_head_fp32
        self.max_batch_rows = options.max_batch_rows
        params = inspect.signature(self.model.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.stop_ids = model_stop_ids(model_path)  # config.json + generation_config.json
        pad = self.model.config.pad_token_id
        self.pad_id = pad if pad is not None else 0

    # ---- weights -------------------------------------------------------------------------
    def update_weights(self, named_tensors: dict[str, torch.Tensor]) -> None:
        """Load a (full, Hugging Face-named) state dict in place."""
        _missing, unexpected = self.model.load_state_dict(named_tensors, strict=False)
        if unexpected:
            raise KeyError(f"update_weights: unknown parameter names {unexpected[:5]}")

    def init_weight_transfer(self, master_address: str, master_port: int, rank_offset: int,
                             world_size: int) -> None:
        raise NotImplementedError(_NO_TRANSFER)

    def receive_weights(self, update_info: dict) -> None:
        raise NotImplementedError(_NO_TRANSFER)

    def sleep(self) -> None:  # nothing to free on the CPU
        pass

    def wake_up(self) -> None:
        pass

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int] | None = None) -> list[Completion]:
        rows = []  # (prompt_index, ids, generator): one row per sample
        for i, ids in enumerate(prompt_token_ids):
            base = seeds[i] if seeds is not None else sampling.seed
            for j in range(sampling.n):
                gen = torch.Generator(device="cpu")
                if base is None:
                    gen.seed()
                else:
                    gen.manual_seed((int(base) * 1_000_003 + j) % (2**63 - 1))
                rows.append((i, ids, gen))
        out: list[Completion] = []
        for s in range(0, len(rows), self.max_batch_rows):
            out.extend(self._generate_rows(rows[s:s + self.max_batch_rows], sampling))
        return out

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.model.get_output_embeddings()
        if self.lm_head_fp32:
            bias = None if head.bias is None else head.bias.float()
            return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
        return head(hidden).float()

    def _generate_rows(self, rows, sampling: SamplingConfig) -> list[Completion]:
        N = len(rows)
        T_prompt = max(len(r[1]) for r in rows)
        ids = torch.full((N, T_prompt), self.pad_id, dtype=torch.long)  # [N, T_prompt] left-padded
        attn = torch.zeros((N, T_prompt), dtype=torch.long)
        for b, (_, prompt, _) in enumerate(rows):
            ids[b, T_prompt - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attn[b, T_prompt - len(prompt):] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        stop_ids = set(sampling.stop_token_ids) | set(self.stop_ids)
        stop_t = torch.tensor(sorted(stop_ids), device=self.device, dtype=torch.long)
        rep = RepetitionTracker(N, sampling.repetition_window, sampling.repetition_prob, self.device)
        tokens, logps = [], []
        finish: list[FinishReason | None] = [None] * N
        lengths = [0] * N
        done = torch.zeros(N, dtype=torch.bool, device=self.device)
        pos = (attn.cumsum(-1) - 1).clamp_min(0)  # [N, T_prompt]
        past, step_ids, step_pos = None, ids, pos
        for t in range(sampling.max_tokens):
            outp = self.model.model(input_ids=step_ids, attention_mask=attn, position_ids=step_pos,
                                    use_cache=True, **{self._cache_kw: past})
            past = getattr(outp, self._cache_kw)  # the output names the cache as the input does
            logits = self._head(outp.last_hidden_state[:, -1])  # [N, V] float32
            raw_logp = torch.log_softmax(logits, -1)
            nxt = self._sample(logits, sampling, [r[2] for r in rows])  # [N]
            lp = raw_logp.gather(-1, nxt[:, None])[:, 0]  # [N]
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            tokens.append(nxt)
            logps.append(lp)
            reasons: dict[FinishReason, torch.Tensor] = {
                "stop": torch.isin(nxt, stop_t), "repetition": rep.update(lp),
                "length": torch.full_like(done, t + 1 >= sampling.max_tokens)}
            for name, hit in reasons.items():  # first reason wins, in this order
                for b in torch.nonzero(hit & ~done).flatten().tolist():
                    finish[b], lengths[b] = name, t + 1
                done |= hit
            if bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((N, 1), dtype=attn.dtype, device=self.device)], -1)
            step_ids, step_pos = nxt[:, None], step_pos[:, -1:] + 1
        tok = torch.stack(tokens, 1).tolist()  # [N, steps]
        lps = torch.stack(logps, 1).tolist()
        return [Completion(r[0], tok[b][:lengths[b]], lps[b][:lengths[b]], finish[b] or "length")
                for b, r in enumerate(rows)]

    @staticmethod
    def _sample(logits: torch.Tensor, sampling: SamplingConfig, gens) -> torch.Tensor:
        if sampling.temperature <= 0.0:
            return logits.argmax(-1)
        probs = torch.softmax(_filter_top(logits / sampling.temperature, sampling), -1)  # [N, V]
        return torch.stack([torch.multinomial(probs[b], 1, generator=g)[0]
                            for b, g in enumerate(gens)])


def _filter_top(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Temperature-scaled ``logits`` [N, V] with the tokens that min-p, top-k and top-p drop
    set to -inf (in vLLM's order); the most likely token always stays."""
    if sampling.min_p > 0.0:
        probs = torch.softmax(logits, -1)
        floor = sampling.min_p * probs.max(-1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, float("-inf"))
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, -1) > sampling.top_p  # keep the first token
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return logits
