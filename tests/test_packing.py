"""Packed micro-batches compute exactly what padded rows compute: values and gradients; the plan
respects the token budget; the attention keeps every sequence to itself; K = 1 skips the separate
old-logprob pass without changing the update; the checkpointing estimate."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import pytest
import torch

from rlhf.learner.attention import packed_causal, use_packed_attention
from rlhf.learner.batching import TrainSample, collate, pack, plan_packs
from rlhf.learner.memory import layers_to_checkpoint
from rlhf.learner.policy import PolicyModel, compile_layers

pytestmark = pytest.mark.unit


def samples(n: int, seed: int = 0, vocab: int = 60) -> list[TrainSample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, r = rng.randint(1, 9), rng.randint(1, 17)
        out.append(TrainSample([rng.randrange(3, vocab) for _ in range(p + r)], p,
                               advantage=rng.uniform(-1, 1),
                               rollout_logprobs=[-rng.uniform(0.1, 5) for _ in range(r)]))
    return out


@pytest.fixture(scope="module")
def lm():
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")


@pytest.mark.parametrize("fp32_head", [True, False])
def test_packed_equals_padded_values_and_gradients(lm, fp32_head):
    padded_lm, packed_lm = copy.deepcopy(lm), copy.deepcopy(lm)
    use_packed_attention(packed_lm)
    padded = PolicyModel(padded_lm, lm_head_fp32=fp32_head, chunk_size=7)
    packed = PolicyModel(packed_lm, lm_head_fp32=fp32_head, chunk_size=7)
    batch = samples(6)
    idx = list(range(6))
    mb, pb = collate(batch, idx, 0), pack(batch, idx)
    assert pb.input_ids.shape == (1, sum(len(s.input_ids) for s in batch))  # no padding
    lp_a, ent_a = padded.micro_forward(mb, torch.device("cpu"))
    lp_b, ent_b = packed.micro_forward(pb, torch.device("cpu"))
    torch.testing.assert_close(lp_b, lp_a, atol=2e-6, rtol=0)
    torch.testing.assert_close(ent_b, ent_a, atol=2e-6, rtol=0)
    assert torch.equal(mb.resp_mask, pb.resp_mask)
    weights = torch.linspace(-1, 1, lp_a.numel()).view_as(lp_a)
    (lp_a * weights * mb.resp_mask).sum().backward()
    (lp_b * weights * pb.resp_mask).sum().backward()
    for (name, a), (_, b) in zip(padded_lm.named_parameters(), packed_lm.named_parameters(), strict=True):
        assert a.grad is not None and a.grad.abs().sum() > 0, name
        torch.testing.assert_close(b.grad, a.grad, atol=2e-6, rtol=1e-5, msg=name)


def test_compiled_layers_give_the_same_values_and_gradients(lm):
    """train.compile: the norms and MLPs run compiled (inductor), packed rows of two lengths
    (dynamic shapes), the same log-probs, entropies and gradients as eager."""
    eager_lm, compiled_lm = copy.deepcopy(lm), copy.deepcopy(lm)
    for m in (eager_lm, compiled_lm):
        use_packed_attention(m)
    compile_layers(compiled_lm.model.layers)
    layer = compiled_lm.model.layers[0]
    assert all(getattr(m, "_compiled_call_impl", None) is not None
               for m in (layer.input_layernorm, layer.post_attention_layernorm, layer.mlp))
    eager, compiled = PolicyModel(eager_lm, chunk_size=7), PolicyModel(compiled_lm, chunk_size=7)
    for seed, n in [(5, 6), (6, 3)]:  # two packed lengths: one graph with dynamic shapes
        batch = samples(n, seed=seed)
        pb = pack(batch, list(range(n)))
        lp_a, ent_a = eager.micro_forward(pb, torch.device("cpu"))
        lp_b, ent_b = compiled.micro_forward(pb, torch.device("cpu"))
        torch.testing.assert_close(lp_b, lp_a, atol=1e-5, rtol=0)
        torch.testing.assert_close(ent_b, ent_a, atol=1e-5, rtol=0)
        (lp_a * pb.resp_mask).sum().backward()
        (lp_b * pb.resp_mask).sum().backward()
    for (name, a), (_, b) in zip(eager_lm.named_parameters(), compiled_lm.named_parameters(), strict=True):
        assert a.grad is not None and a.grad.abs().sum() > 0, name
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("setting,compiled", [("on", True), ("off", False), ("auto", False)])
def test_train_compile_setting_reaches_the_layers(tiny_model_dir, monkeypatch, setting, compiled):
    """train.compile=on compiles every layer's norms and MLP; off never; auto only on GPU."""
    from rlhf.config import CispoLoss, ModelConfig, TrainConfig
    from rlhf.learner import worker as worker_mod

    seen = []
    monkeypatch.setattr(worker_mod, "compile_layers", lambda layers: seen.append(len(layers)))
    w = worker_mod.LearnerWorker(tiny_model_dir, ModelConfig(path=tiny_model_dir),
                                 TrainConfig(compile=setting), CispoLoss(), True)
    w.join("127.0.0.1", 29734)
    try:
        n_layers = len(w.policy.lm.model.layers)
        assert seen == ([n_layers] if compiled else [])
    finally:
        w.shutdown()


def test_packing_without_the_packed_attention_is_refused(lm):
    with pytest.raises(RuntimeError, match="needs the packed attention"):
        PolicyModel(copy.deepcopy(lm)).micro_forward(pack(samples(2), [0, 1]), torch.device("cpu"))


def test_pack_layout():
    a = TrainSample([10, 11, 12, 13], 2)  # response 12, 13
    b = TrainSample([20, 21, 22], 1)      # response 21, 22
    pb = pack([a, b], [0, 1])
    assert pb.input_ids.tolist() == [[10, 11, 12, 13, 20, 21, 22]]
    assert pb.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert pb.cu_seqlens.tolist() == [0, 4, 7] and pb.cu_seqlens.dtype == torch.int32
    assert pb.max_len == 4
    assert pb.select.tolist() == [1, 2, 4, 5]  # hidden states that predict 12, 13, 21, 22
    assert pb.input_ids[0, pb.select + 1].tolist() == [12, 13, 21, 22]
    assert pb.valid.tolist() == [[True, True], [True, True]]


def test_plan_packs_fills_the_budget_and_keeps_every_sample_once():
    lengths = [random.Random(i).randint(1, 40) for i in range(50)] + [70]
    plan = plan_packs(lengths, 64)
    assert sorted(i for g in plan for i in g) == list(range(len(lengths)))
    for g in plan:
        assert sum(lengths[i] for i in g) <= 64 or g == [50]  # the 70-token sample alone
    assert len(plan) <= -(-sum(lengths) // 64) + 2  # first fit decreasing: nearly full packs


def test_packed_causal_keeps_each_sequence_to_itself():
    torch.manual_seed(1)
    lens = [3, 5, 1, 4]
    P, Hq, Hkv, D = sum(lens), 4, 2, 8
    q, k, v = torch.randn(P, Hq, D), torch.randn(P, Hkv, D), torch.randn(P, Hkv, D)
    cu = torch.tensor([0, 3, 8, 9, 13], dtype=torch.int32)
    out = packed_causal(q, k, v, cu, max(lens), scale=None)
    doc = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))
    pos = torch.arange(P)
    allowed = (doc[:, None] == doc[None, :]) & (pos[None, :] <= pos[:, None])  # [P, P]
    kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    scores = torch.einsum("phd,khd->hpk", q, kr) / D ** 0.5
    ref = torch.einsum("hpk,khd->phd", scores.masked_fill(~allowed, -torch.inf).softmax(-1), vr)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_k1_skips_the_old_logprob_pass_and_keeps_the_update(tiny_model_dir):
    from rlhf.config import CispoLoss, ModelConfig, TrainConfig
    from rlhf.learner.worker import LearnerWorker

    def run(skip: bool):
        w = LearnerWorker(tiny_model_dir, ModelConfig(path=tiny_model_dir),
                          TrainConfig(micro_batch_tokens=64), CispoLoss(), True)
        w.join("127.0.0.1", 29733)
        try:
            batch = samples(6, seed=3)
            expected_old = w.compute_logprobs(batch)
            if not skip:  # the long way: old log-probs first, then the same one update
                for s, lp in zip(batch, expected_old, strict=True):
                    s.old_logprobs = lp
            calls = []
            real = w.compute_logprobs
            w.compute_logprobs = lambda *a, **k: calls.append(1) or real(*a, **k)
            m = w._update(batch, old_is_current=skip) if not skip else w.train([batch])
            assert calls == []  # K = 1: no separate pass
            sd = {k: v.clone() for k, v in w.policy.state_dict().items()}
            return batch, expected_old, m, sd
        finally:
            w.shutdown()

    batch, expected_old, m, skipped = run(True)
    for s, want in zip(batch, expected_old, strict=True):
        assert s.old_logprobs == pytest.approx(want, abs=1e-6)
    assert m["mismatch/tokens"] == sum(s.response_len for s in batch)
    assert m["ratio_mean"] == pytest.approx(1.0)
    _, _, _, long_way = run(False)
    for k in skipped:
        torch.testing.assert_close(skipped[k], long_way[k], atol=1e-7, rtol=0, msg=k)


def test_first_minibatch_reuses_its_own_forward_as_old_logprobs(tiny_model_dir):
    """K = 2: the separate old-logprob pass covers mini-batch 2 only; mini-batch 1's old values
    come from its own update's forward pass (the weights have not changed yet). Same old values
    and the same weights after both updates as the long way (a pass over everything first)."""
    from rlhf.config import CispoLoss, ModelConfig, TrainConfig
    from rlhf.learner.worker import LearnerWorker

    def run(short: bool):
        w = LearnerWorker(tiny_model_dir, ModelConfig(path=tiny_model_dir),
                          TrainConfig(micro_batch_tokens=64), CispoLoss(), True)
        w.join("127.0.0.1", 29735)
        init = {k: v.clone() for k, v in w.policy.state_dict().items()}
        try:
            batch = samples(8, seed=4)
            first, second = batch[:4], batch[4:]
            expected_old = w.compute_logprobs(batch)
            passed: list[int] = []
            real = w.compute_logprobs
            w.compute_logprobs = lambda s, *a, **k: passed.extend(map(id, s)) or real(s, *a, **k)
            if short:
                w.train([first, second])
                assert passed == [id(s) for s in second]  # mini-batch 1 is not in the pass
            else:
                for s, lp in zip(batch, expected_old, strict=True):
                    s.old_logprobs = lp
                w._update(first)
                w._update(second)
            after = {k: v.clone() for k, v in w.policy.state_dict().items()}
            assert all(not torch.equal(after[k], init[k]) for k in init)  # both updates moved them
            return batch, expected_old, after
        finally:
            w.shutdown()

    batch, expected_old, short = run(True)
    for s, want in zip(batch, expected_old, strict=True):
        assert s.old_logprobs == pytest.approx(want, abs=1e-6)
    _, _, long_way = run(False)
    for k in short:
        torch.testing.assert_close(short[k], long_way[k], atol=1e-6, rtol=0, msg=k)


def test_checkpointing_only_what_memory_needs():
    cfg = SimpleNamespace(hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                          num_key_value_heads=2, head_dim=64, num_hidden_layers=24, vocab_size=151936)
    gib = 2**30
    # per token-layer: 1.25 * 2 * (8*896 + 2*128 + 4*4864) = 67,200 bytes
    assert layers_to_checkpoint(cfg, 8192, 139 * gib, 494_000_000, 1, 4096) == 0
    assert layers_to_checkpoint(cfg, 65536, 139 * gib, 494_000_000, 1, 4096) == 0  # 64K fit a H200
    n80 = layers_to_checkpoint(cfg, 65536, 80 * gib, 494_000_000, 1, 4096)
    n139 = layers_to_checkpoint(cfg, 98304, 139 * gib, 494_000_000, 1, 4096)
    assert (n80, n139) == (10, 5)
    budget = 80 * gib - 16 * 494_000_000 - 12 * 4096 * 151936 - 4 * gib
    need = 24 * 65536 * 67_200
    assert n80 == -(-(need - budget) // (65536 * (67_200 - 2 * 896)))
    assert layers_to_checkpoint(cfg, 10**7, 80 * gib, 494_000_000, 1, 4096) == 24
