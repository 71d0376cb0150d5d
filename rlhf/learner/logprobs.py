"""Memory-bounded log-probabilities and entropy from the LM head, in float32.

MiniMax-M1 found the train/inference probability mismatch came from the LM head's precision and
fixed it by computing the head in FP32. The full-vocabulary logits of a long trace dominate
memory (a 32K-token sequence with V = 152K is 19 GiB in float32), so here the head runs over
chunks of ``chunk_size`` tokens: each chunk's float32 logits live only inside the loop, in the
forward pass and again in the backward pass (recomputed, never stored).

Precision matches vLLM's FP32 head (``hf_overrides={"head_dtype": "float32"}``): with bf16/fp16
weights on a GPU the head is ``torch.mm(h, W^T, out_dtype=float32)``, bf16 operands with float32
accumulation and float32 logits (tensor cores, never rounded to bf16); with float32 weights it
is a float32 matmul. Softmax, logsumexp and gathers are float32 either way.

Shapes: ``T`` selected tokens (flattened over the batch), ``H`` hidden size, ``V`` vocabulary.
"""

from __future__ import annotations

import torch


class _ChunkedHeadLogprob(torch.autograd.Function):
    """logprob[t] = (h W^T)[t, target[t]] - logsumexp((h W^T)[t]) in float32, chunked."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):  # [T,H], [V,H], [V]|None, [T]
        T = hidden.shape[0]
        out = torch.empty(T, dtype=torch.float32, device=hidden.device)  # [T]
        ent = torch.empty(T, dtype=torch.float32, device=hidden.device)  # [T]
        w32 = _head_weight(hidden, weight)
        b32 = None if bias is None else bias.float()
        for s in range(0, T, chunk_size):
            logits = _logits(hidden[s:s + chunk_size], w32, b32)  # [c, V] float32
            lse = torch.logsumexp(logits, dim=-1)  # [c]
            out[s:s + chunk_size] = logits.gather(-1, targets[s:s + chunk_size, None])[:, 0] - lse
            probs = torch.softmax(logits, dim=-1)
            ent[s:s + chunk_size] = lse - (probs * logits).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(ent)
        return out, ent

    @staticmethod
    def backward(ctx, grad_out, _grad_ent):
        hidden, weight, bias, targets = ctx.saved_tensors
        c = ctx.chunk_size
        w32 = _head_weight(hidden, weight)
        b32 = None if bias is None else bias.float()
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) \
            if (bias is not None and ctx.needs_input_grad[2]) else None
        for s in range(0, hidden.shape[0], c):
            h = hidden[s:s + c]
            # d logprob / d logits = onehot(target) - softmax(logits)
            g_logits = -torch.softmax(_logits(h, w32, b32), dim=-1)  # [c, V]
            g_logits.scatter_add_(-1, targets[s:s + c, None],
                                  torch.ones_like(targets[s:s + c, None], dtype=g_logits.dtype))
            g_logits.mul_(grad_out[s:s + c, None].float())
            if grad_h is not None:
                grad_h[s:s + c] = _mm32(g_logits.to(w32.dtype), w32).to(hidden.dtype)
            if grad_w is not None:
                grad_w += _mm32(g_logits.t().to(w32.dtype), h.to(w32.dtype))
            if grad_b is not None:
                grad_b.add_(g_logits.sum(0))
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None


def _tensor_core_ok(t: torch.Tensor) -> bool:
    return t.is_cuda and t.dtype in (torch.bfloat16, torch.float16)


def _head_weight(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weight as the matmul uses it: as is for bf16 on a GPU, else float32."""
    if _tensor_core_ok(hidden) and weight.dtype == hidden.dtype:
        return weight
    return weight.float()


def _mm32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a float32 result: float32 accumulation of bf16 operands on a GPU."""
    if _tensor_core_ok(a):
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()


def _logits(h: torch.Tensor, w: torch.Tensor, b32: torch.Tensor | None) -> torch.Tensor:
    logits = _mm32(h.to(w.dtype), w.t())  # [c, V] float32
    return logits if b32 is None else logits + b32


def chunked_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                     bias: torch.Tensor | None = None, chunk_size: int = 1024,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 log-probabilities of ``targets`` and entropies under the LM head.

    hidden [T, H] (any float dtype), weight [V, H], targets [T] -> (logprobs [T] with gradient
    to hidden/weight/bias, entropy [T] without gradient). At most one ``[chunk_size, V]``
    float32 tensor is alive at a time, forward and backward.
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be [T, H] and targets [T]; got {tuple(hidden.shape)} "
                         f"and {tuple(targets.shape)}")
    return _ChunkedHeadLogprob.apply(hidden, weight, bias, targets, max(1, int(chunk_size)))


def naive_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                   bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the whole [T, V] float32 logits at once (tests and benchmarks only)."""
    logits = torch.nn.functional.linear(hidden.float(), weight.float(),
                                        None if bias is None else bias.float())  # [T, V]
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, targets[:, None])[:, 0], ent.detach()
