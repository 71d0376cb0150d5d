"""Train samples and token-budget micro-batches.

A :class:`TrainSample` carries the token ids exactly as the engine produced them (prompt then
response, never re-tokenised), the sampler's ``rollout_logprobs`` of the response tokens, the
advantage and the policy version that generated it.

Two layouts of a micro-batch: :class:`MicroBatch`, padded rows (``collate``), and
:class:`PackedBatch`, every sequence one after another in one row with positions restarting at
0 and the sequence boundaries for the attention kernel (``pack``; rlhf/learner/attention.py), so
no compute goes to padding. Both give the response tokens' values back in the same ``[N, T]``
layout, so the losses do not know which one ran.

Shapes (rollout/base.py): ``N`` samples, ``T_seq`` padded sequence (prompt + response) length,
``T`` padded response length, ``P`` packed tokens, ``T_sel`` response tokens of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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


def pad_responses(values: list[list[float]], shape: torch.Size) -> torch.Tensor:
    """Per-sample response values, zero-padded into ``shape`` = [N, T]."""
    out = torch.zeros(shape, dtype=torch.float32)
    for row, vals in enumerate(values):
        out[row, :len(vals)] = torch.tensor(vals, dtype=torch.float32)
    return out


@dataclass
class MicroBatch:
    input_ids: torch.Tensor       # [N, T_seq] right-padded
    attention_mask: torch.Tensor  # [N, T_seq]
    prompt_lens: torch.Tensor     # [N]
    resp_lens: torch.Tensor       # [N]
    resp_mask: torch.Tensor       # [N, T]
    advantages: torch.Tensor      # [N]
    indices: list[int]            # positions in the caller's sample list

    @property
    def valid(self) -> torch.Tensor:  # [N, T] bool
        return self.resp_mask.bool()

    def response_tensor(self, values: list[list[float]]) -> torch.Tensor:
        """Pad per-sample response values (e.g. old_logprobs) into [N, T]."""
        return pad_responses(values, self.resp_mask.shape)


@dataclass
class PackedBatch:
    input_ids: torch.Tensor       # [1, P] the sequences one after another
    position_ids: torch.Tensor    # [1, P] restarting at 0 for each sequence
    cu_seqlens: torch.Tensor      # [N + 1] int32 sequence boundaries
    max_len: int                  # longest sequence
    select: torch.Tensor          # [T_sel] packed positions whose hidden state predicts a response token
    valid: torch.Tensor           # [N, T] bool: where those T_sel values go (row-major)
    resp_mask: torch.Tensor       # [N, T]
    advantages: torch.Tensor      # [N]
    indices: list[int]

    def response_tensor(self, values: list[list[float]]) -> torch.Tensor:
        """Pad per-sample response values (e.g. old_logprobs) into [N, T]."""
        return pad_responses(values, self.resp_mask.shape)

    def to(self, device: torch.device) -> PackedBatch:
        """The tensors on ``device`` (the CPU-side ``valid``/``resp_mask`` stay usable)."""
        return replace(self, input_ids=self.input_ids.to(device), position_ids=self.position_ids.to(device),
                       cu_seqlens=self.cu_seqlens.to(device), select=self.select.to(device),
                       valid=self.valid.to(device))


def plan_packs(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Group sample indices so that each group's total length fits the budget (first fit,
    longest first); a sample longer than the budget gets a group of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for g, left in enumerate(room):
            if lengths[i] <= left:
                groups[g].append(i)
                room[g] -= lengths[i]
                break
        else:
            groups.append([i])
            room.append(token_budget - lengths[i])
    return groups


def pack(samples: list[TrainSample], indices: list[int]) -> PackedBatch:
    chosen = [samples[i] for i in indices]
    lens = [len(s.input_ids) for s in chosen]
    T = max(max(s.response_len for s in chosen), 1)
    ids = torch.tensor([t for s in chosen for t in s.input_ids], dtype=torch.long)
    pos = torch.cat([torch.arange(n) for n in lens])
    cu = torch.tensor([0, *lens], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    # hidden at packed position o + p - 1 + k predicts response token k of the sequence at o
    select = torch.cat([torch.arange(s.response_len) + int(cu[j]) + s.prompt_len - 1
                        for j, s in enumerate(chosen)])
    resp = torch.tensor([s.response_len for s in chosen])
    valid = torch.arange(T)[None, :] < resp[:, None]
    return PackedBatch(ids[None], pos[None], cu, max(lens), select, valid, valid.float(),
                       torch.tensor([s.advantage for s in chosen], dtype=torch.float32), indices)


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
