"""Causal attention over packed rows: several sequences one after another in one row, each
attending only to itself, with no padding and no ``[T, T]`` mask.

Registered with transformers as ``"m1rl_packed"`` (:func:`use_packed_attention`); the packed
forward passes ``cu_seq_lens_q`` (sequence boundaries, ``[N + 1]`` int32) and ``max_length_q``
as keyword arguments, which transformers hands to every attention call. Kernels:

* CUDA, several sequences: ``torch.nn.attention.varlen.varlen_attn`` (PyTorch's built-in
  FlashAttention varlen kernel; forward and backward), causal, GQA by repeated KV heads where the
  kernel lacks ``enable_gqa``;
* CUDA, one sequence (a long trace fills a micro-batch alone): the dense causal
  ``scaled_dot_product_attention``, cuDNN's fused attention first (faster than FlashAttention-2
  on Hopper at long lengths; ``benchmarks/bench_learner.py`` measures both), then
  FlashAttention; :func:`set_single_sequence_kernel` picks ``"varlen"`` instead;
* otherwise (CPU, tests): one ``scaled_dot_product_attention`` per sequence, the reference.

A call without boundaries (an unpacked batch) goes to transformers' SDPA attention unchanged.
Shapes: ``P`` packed tokens, ``Hq``/``Hkv`` query/key heads, ``D`` head dim.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
import torch.nn.functional as F

NAME = "m1rl_packed"
_SINGLE = {"kernel": "cudnn"}  # one sequence on CUDA: "cudnn" (then flash) or "varlen"


def set_single_sequence_kernel(kernel: str) -> None:
    """The kernel for a packed row that holds one sequence on CUDA: ``"cudnn"`` (dense SDPA,
    cuDNN first) or ``"varlen"`` (the same kernel as several sequences)."""
    if kernel not in ("cudnn", "varlen"):
        raise ValueError(f"single-sequence kernel must be 'cudnn' or 'varlen', not {kernel!r}")
    _SINGLE["kernel"] = kernel


@cache
def _varlen():
    """(varlen_attn, its keyword set) when this torch has it, else None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:  # [P, Hkv, D] -> [P, Hkv * n, D]
    return x if n == 1 else x.repeat_interleave(n, dim=1)


def packed_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                  max_len: int, scale: float | None) -> torch.Tensor:
    """Causal attention per sequence of a packed row. q [P, Hq, D], k/v [P, Hkv, D],
    cu [N + 1] -> [P, Hq, D]."""
    rep = q.shape[1] // k.shape[1]
    if q.is_cuda and len(cu) == 2 and _SINGLE["kernel"] == "cudnn":
        return _dense_causal(q, _repeat_kv(k, rep), _repeat_kv(v, rep), scale)
    fn = _varlen() if q.is_cuda else None
    if fn is not None:
        varlen_attn, params = fn
        kw: dict = {"scale": scale}
        if "window_size" in params:
            kw["window_size"] = (-1, 0)
        else:
            kw["is_causal"] = True
        if rep > 1 and "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:
            k, v = _repeat_kv(k, rep), _repeat_kv(v, rep)
        cu32 = cu.to(device=q.device, dtype=torch.int32)
        return varlen_attn(q, k, v, cu32, cu32, max_len, max_len, **kw)
    k, v = _repeat_kv(k, rep), _repeat_kv(v, rep)
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for a, b in zip(bounds, bounds[1:], strict=False):
        seg = F.scaled_dot_product_attention(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1),
                                             v[a:b].transpose(0, 1), is_causal=True, scale=scale)
        out[a:b] = seg.transpose(0, 1)
    return out


def _dense_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None,
                  ) -> torch.Tensor:
    """One sequence: q/k/v [P, H, D] -> [P, H, D], cuDNN's fused attention where it runs, else
    FlashAttention (SDPA takes the first backend of the list that supports the inputs)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    with sdpa_kernel(order, set_priority=True):
        out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                             v.transpose(0, 1)[None], is_causal=True, scale=scale)
    return out[0].transpose(0, 1)


def packed_attention_forward(module, query, key, value, attention_mask, dropout=0.0,
                             scaling=None, cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """transformers' attention interface: query [1, Hq, P, D], key/value [1, Hkv, P, D] ->
    ([1, P, Hq, D], None)."""
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one row; got {query.shape[0]}")
    out = packed_causal(query[0].transpose(0, 1), key[0].transpose(0, 1),
                        value[0].transpose(0, 1), cu_seq_lens_q, int(max_length_q), scaling)
    return out[None], None


def use_packed_attention(lm) -> None:
    """Register the packed attention with transformers and switch ``lm`` to it."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention_forward)
    setter = getattr(lm, "set_attn_implementation", None)
    if callable(setter):
        setter(NAME)
    else:  # older transformers
        lm.config._attn_implementation = NAME
