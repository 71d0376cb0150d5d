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


# ---- packing on the GPU kernel ---------------------------------------------------------------
def _qwen(vocab=512, layers=2, dtype=torch.bfloat16):
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").cuda()


def test_varlen_kernel_is_used_and_packed_equals_padded_on_gpu():
    import copy
    import random

    from rlhf.learner.attention import _varlen, use_packed_attention
    from rlhf.learner.batching import TrainSample, collate, pack
    from rlhf.learner.policy import PolicyModel

    assert _varlen() is not None  # PyTorch's FlashAttention varlen kernel is there
    lm = _qwen()
    packed_lm = copy.deepcopy(lm)
    use_packed_attention(packed_lm)
    rng = random.Random(0)
    batch = [TrainSample([rng.randrange(512) for _ in range(p + r)], p)
             for p, r in [(rng.randint(1, 200), rng.randint(1, 900)) for _ in range(12)]]
    idx = list(range(len(batch)))
    dev = torch.device("cuda")
    lp_a, _ = PolicyModel(lm, chunk_size=512).micro_forward(collate(batch, idx, 0), dev)
    pb = pack(batch, idx)
    lp_b, _ = PolicyModel(packed_lm, chunk_size=512).micro_forward(pb, dev)
    mask = pb.resp_mask.cuda()
    assert ((lp_a - lp_b).abs() * mask).max() < 0.05  # bf16 activations, two kernels
    assert ((lp_a - lp_b) * mask).abs().sum() / mask.sum() < 5e-3
    w = torch.randn_like(lp_a) * mask
    (lp_a * w).sum().backward()
    (lp_b * w).sum().backward()
    for (n, a), (_, b) in zip(lm.named_parameters(), packed_lm.named_parameters(), strict=True):
        rel = ((a.grad.float() - b.grad.float()).norm() / a.grad.float().norm()).item()
        assert rel < 3e-2, (n, rel)


# ---- vLLM (needs the staged vLLM: scripts/gpu_tests.sh) ---------------------------------------
@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    pytest.importorskip("vllm")
    from rlhf.models import build_tiny_model
    from rollout.base import EngineSetup
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine

    d = build_tiny_model(tmp_path_factory.mktemp("vllm") / "m", hidden_size=256, num_layers=2,
                         num_heads=4, num_kv_heads=2)
    eng = VLLMEngine(str(d), VLLMEngineConfig(gpu_memory_utilization=0.3, max_model_len=1024),
                     EngineSetup(dtype="bfloat16", lm_head_fp32=True, sleep_mode=True, seed=0))
    return str(d), eng


def test_vllm_raw_logprobs_equal_the_learners(tiny_engine):
    from transformers import AutoModelForCausalLM

    from rlhf.learner.batching import TrainSample, collate
    from rlhf.learner.policy import PolicyModel
    from rlhf.learner.stats import mismatch_stats
    from rollout.base import SamplingConfig

    path, eng = tiny_engine
    prompts = [[5 + i, 6, 7, 8 + i] for i in range(16)]
    comps = eng.generate(prompts, SamplingConfig(n=2, max_tokens=96, repetition_window=0),
                         seeds=list(range(16)))
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda()
    samples = [TrainSample(prompts[c.prompt_index] + c.token_ids, 4) for c in comps]
    lp, _ = PolicyModel(lm).micro_forward(collate(samples, list(range(len(samples))), 0),
                                          torch.device("cuda"))
    learner = torch.cat([lp[i, :len(c.token_ids)] for i, c in enumerate(comps)])
    sampler = torch.tensor([x for c in comps for x in c.logprobs], device=learner.device)
    stats = mismatch_stats(learner, sampler)
    print("vllm vs learner", stats)
    assert stats["tokens"] > 1000 and stats["logprob_abs_diff"] < 0.05 and stats["pearson"] > 0.99


def test_vllm_weight_update_sleep_and_wake(tiny_engine):
    from safetensors.torch import load_file

    from rollout.base import SamplingConfig

    path, eng = tiny_engine
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=32, repetition_window=0)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    before = [c.token_ids for c in eng.generate(prompts, greedy)]
    sd = load_file(f"{path}/model.safetensors")
    eng.update_weights({k: v * 1.5 for k, v in sd.items()})  # different weights
    assert [c.token_ids for c in eng.generate(prompts, greedy)] != before
    eng.update_weights(dict(sd))  # exactly the originals again
    assert [c.token_ids for c in eng.generate(prompts, greedy)] == before
    torch.cuda.synchronize()
    used = torch.cuda.mem_get_info()
    eng.sleep()
    freed = torch.cuda.mem_get_info()[0] - used[0]
    eng.wake_up()
    print("sleep freed GiB", freed / 2**30)
    assert freed > 0.2 * 2**30  # the KV cache went back
    assert [c.token_ids for c in eng.generate(prompts, greedy)] == before
