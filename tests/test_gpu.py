"""GPU-only checks (deselected in CI; run on the lent GPU machine with `pytest -m gpu`)."""

import pytest
import torch

from rlhf.learner.logprobs import chunked_logprobs

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_head_matches_float32_reference_values_and_grads():
    g = torch.Generator(device="cuda").manual_seed(0)
    T, H, V = 3000, 256, 32000
    h = (torch.randn(T, H, device="cuda", generator=g) / 4).bfloat16().requires_grad_(True)
    w = (torch.randn(V, H, device="cuda", generator=g) / 4).bfloat16().requires_grad_(True)
    tgt = torch.randint(0, V, (T,), device="cuda", generator=g)
    lp, ent = chunked_logprobs(h, w, tgt, chunk_size=1024)
    lp.sum().backward()
    h64, w64 = h.detach().double().requires_grad_(True), w.detach().double().requires_grad_(True)
    ref = torch.log_softmax(h64 @ w64.t(), -1).gather(-1, tgt[:, None])[:, 0]
    ref.sum().backward()
    assert (lp.double() - ref).abs().max() < 1e-4  # float32 logits: no bf16 rounding of logits
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(h.grad, h64.grad) < 1e-2 and rel(w.grad, w64.grad) < 1e-2  # bf16 grads
