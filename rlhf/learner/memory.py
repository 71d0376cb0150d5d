"""How many decoder layers need activation checkpointing for a micro-batch to fit (``model.
gradient_checkpointing: auto``): recomputation costs about a third of the step, so a layer is
checkpointed only when the memory says so.

Estimate per token, in bytes: a decoder layer without checkpointing keeps about
``2 * (8H + 2 * kv + 4I)`` (bf16 inputs of its norms, projections, attention output and MLP
activations; ``H`` hidden, ``kv`` key/value width, ``I`` intermediate size), times a safety
factor of 1.25; a checkpointed layer keeps its input, ``2H``. The rest of the budget is the
device's memory less 16 bytes per (sharded) parameter (float32 weight, gradient and the two AdamW
moments), the FP32 head's chunk (``chunk x V`` float32, three alive at once) and a margin.
``benchmarks/bench_learner.py`` prints the measured peak next to the estimate.
"""

from __future__ import annotations

import math

SAFETY = 1.25
MARGIN_BYTES = 4 << 30


def layer_bytes_per_token(cfg) -> float:
    H, inter = cfg.hidden_size, cfg.intermediate_size
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", heads) * (getattr(cfg, "head_dim", None) or H // heads)
    return SAFETY * 2 * (8 * H + 2 * kv + 4 * inter)


def layers_to_checkpoint(cfg, tokens: int, device_bytes: int, params: int, world_size: int,
                         head_chunk: int) -> int:
    """Decoder layers to checkpoint (0..num_hidden_layers) for ``tokens`` per micro-batch."""
    L = cfg.num_hidden_layers
    per_layer = tokens * layer_bytes_per_token(cfg)
    kept = tokens * 2 * cfg.hidden_size
    budget = (device_bytes - 16 * params / world_size - 3 * 4 * head_chunk * cfg.vocab_size
              - MARGIN_BYTES)
    excess = L * per_layer - budget
    if excess <= 0:
        return 0
    return min(L, math.ceil(excess / max(per_layer - kept, 1.0)))


def checkpoint_layers(lm, layers: list, n: int) -> None:
    """Activation checkpointing on the first ``n`` decoder layers only (0: none)."""
    if n <= 0:
        return
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.config.use_cache = False
    for layer in layers[n:]:
        layer.gradient_checkpointing = False
