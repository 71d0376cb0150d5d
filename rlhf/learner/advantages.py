"""Group-relative advantages, DAPO dynamic sampling and the soft overlong penalty.

Rewards come as a flat ``[N]`` tensor ordered group by group (``G`` responses per prompt,
``N = num_groups * G``).
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, *, normalize_std: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """(reward - group mean) / (group std + eps); std is the unbiased sample std as in GRPO.

    With ``normalize_std=False`` only the mean is removed (Dr. GRPO). A group whose rewards are
    all equal gets advantage 0 for every response.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [N] with N a multiple of G={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size).to(torch.float64)  # [N/G, G]
    centred = grouped - grouped.mean(-1, keepdim=True)
    if normalize_std and group_size > 1:
        std = grouped.std(-1, keepdim=True)
        centred = torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))
    return centred.reshape(-1).to(torch.float32)  # [N]


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling: a bool per group, False where every reward is equal (such a
    group has zero advantage everywhere and only dilutes the batch)."""
    grouped = rewards.view(-1, group_size)
    return (grouped.max(-1).values - grouped.min(-1).values) > 0  # [N/G]


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward.

    0 for ``L <= max_len - cache_len``; ``((max_len - cache_len) - L) / cache_len`` (linear
    from 0 to -1) inside the cache window; -1 beyond ``max_len``.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(f"overlong: need 0 < cache_len ({cache_len}) <= max_len ({max_len})")
    lengths = lengths.to(torch.float32)
    start = max_len - cache_len
    pen = (start - lengths) / cache_len
    pen = torch.where(lengths <= start, torch.zeros_like(pen), pen)
    return torch.where(lengths > max_len, torch.full_like(pen, -1.0), pen)
