"""The chunked FP32 LM head against the naive full-logits path: equal values and gradients."""

import pytest
import torch

from rlhf.learner.logprobs import chunked_logprobs, naive_logprobs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_matches_naive_values_and_gradients(chunk, with_bias):
    g = torch.Generator().manual_seed(chunk)
    T, H, V = 37, 16, 50
    h = torch.randn(T, H, generator=g, requires_grad=True)
    w = torch.randn(V, H, generator=g, requires_grad=True)
    b = torch.randn(V, generator=g, requires_grad=True) if with_bias else None
    tgt = torch.randint(0, V, (T,), generator=g)
    upstream = torch.randn(T, generator=g)
    lp, ent = chunked_logprobs(h, w, tgt, b, chunk_size=chunk)
    (lp * upstream).sum().backward()
    grads = [h.grad.clone(), w.grad.clone()] + ([b.grad.clone()] if with_bias else [])
    for t in [h, w] + ([b] if with_bias else []):
        t.grad = None
    lp_ref, ent_ref = naive_logprobs(h, w, tgt, b)
    (lp_ref * upstream).sum().backward()
    refs = [h.grad, w.grad] + ([b.grad] if with_bias else [])
    assert torch.allclose(lp, lp_ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(ent, ent_ref, atol=1e-5, rtol=1e-5)
    assert not ent.requires_grad
    for got, ref in zip(grads, refs):
        assert torch.allclose(got, ref, atol=1e-5, rtol=1e-4)


def test_bf16_inputs_get_float32_math_and_input_dtype_grads():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(9, 8, generator=g).to(torch.bfloat16).requires_grad_(True)
    w = torch.randn(20, 8, generator=g).to(torch.bfloat16).requires_grad_(True)
    tgt = torch.randint(0, 20, (9,), generator=g)
    lp, _ = chunked_logprobs(h, w, tgt, chunk_size=4)
    assert lp.dtype == torch.float32
    ref, _ = naive_logprobs(h.float(), w.float(), tgt)
    assert torch.allclose(lp, ref, atol=1e-6)  # same float32 math on the bf16 values
    lp.sum().backward()
    assert h.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.bfloat16


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"hidden must be \[T, H\]"):
        chunked_logprobs(torch.zeros(2, 3, 4), torch.zeros(5, 4), torch.zeros(2, dtype=torch.long))
