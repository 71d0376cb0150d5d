"""Train samples and token-budget micro-batches.

A :class:`TrainSample` carries the token ids exactly as the engine produced them (prompt then
response, never re-tokenised), the sampler's ``rollout_logprobs`` of the response tokens, the
advantage and the policy version that generated it.

Shapes (rollout/base.py) in a :class:`MicroBatch`: ``N`` samples, ``T_seq`` padded sequence
(prompt + response) length, ``T`` padded response length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrainSample:
    input_ids: list[int]            # prompt + response token ids
    prompt_len: int
    advantage: float = 0.0
    rollout_logprobs: list[float] = field(default_factory=list)  # per response token
    policy_version: int = 0
    old_logprobs: list[float] | None = None  # filled by the learner
    ref_logprobs: list[float] | None = None

    @property
    def response_len(self) -> int:
        return len(self.input_ids) - self.prompt_len


@dataclass
class MicroBatch:
    input_ids: torch.Tensor       # [N, T_seq] right-padded
    attention_mask: torch.Tensor  # [N, T_seq]
    prompt_lens: torch.Tensor     # [N]
    resp_lens: torch.Tensor       # [N]
    resp_mask: torch.Tensor       # [N, T]
    advantages: torch.Tensor      # [N]
    indices: list[int]            # positions in the caller's sample list

    def response_tensor(self, values: list[list[float]]) -> torch.Tensor:
        """Pad per-sample response values (e.g. old_logprobs) into [N, T]."""
        out = torch.zeros(self.resp_mask.shape, dtype=torch.float32)
        for row, vals in enumerate(values):
            out[row, :len(vals)] = torch.tensor(vals, dtype=torch.float32)
        return out


def plan_micro_batches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Group sample indices so that each group's padded size (count x longest) fits the
    budget. Sorting by length first keeps long and short samples apart, so padding stays
    small; a sample longer than the budget gets a group of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * longest > token_budget:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


def collate(samples: list[TrainSample], indices: list[int], pad_id: int) -> MicroBatch:
    chosen = [samples[i] for i in indices]
    N = len(chosen)
    T_seq = max(len(s.input_ids) for s in chosen)
    T = max(max(s.response_len for s in chosen), 1)
    ids = torch.full((N, T_seq), pad_id, dtype=torch.long)
    attn = torch.zeros((N, T_seq), dtype=torch.long)
    rmask = torch.zeros((N, T), dtype=torch.float32)
    for row, s in enumerate(chosen):
        ids[row, :len(s.input_ids)] = torch.tensor(s.input_ids, dtype=torch.long)
        attn[row, :len(s.input_ids)] = 1
        rmask[row, :s.response_len] = 1.0
    return MicroBatch(ids, attn, torch.tensor([s.prompt_len for s in chosen]),
                      torch.tensor([s.response_len for s in chosen]), rmask,
                      torch.tensor([s.advantage for s in chosen], dtype=torch.float32), indices)
