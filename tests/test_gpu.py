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


def test_one_sequence_row_runs_cudnn_attention_and_equals_the_varlen_kernel():
    """A packed row holding one sequence goes to the dense causal SDPA with cuDNN first
    (rlhf/learner/attention.py); its values and gradients equal the varlen FlashAttention
    kernel's within bf16 noise."""
    import copy

    from torch.profiler import ProfilerActivity, profile

    from rlhf.learner import attention
    from rlhf.learner.batching import TrainSample, pack
    from rlhf.learner.policy import PolicyModel

    lm = _qwen()
    attention.use_packed_attention(lm)
    other = copy.deepcopy(lm)
    g = torch.Generator().manual_seed(0)
    pb = pack([TrainSample(torch.randint(0, 512, (3000,), generator=g).tolist(), 100)], [0])
    dev = torch.device("cuda")
    try:
        attention.set_single_sequence_kernel("cudnn")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            lp_a, _ = PolicyModel(lm, chunk_size=512).micro_forward(pb, dev)
        ops = {e.key for e in prof.key_averages()}
        attention.set_single_sequence_kernel("varlen")
        lp_b, _ = PolicyModel(other, chunk_size=512).micro_forward(pb, dev)
    finally:
        attention.set_single_sequence_kernel("cudnn")
    assert "aten::_scaled_dot_product_cudnn_attention" in ops, sorted(o for o in ops if "attention" in o)
    assert (lp_a - lp_b).abs().max() < 0.05 and (lp_a - lp_b).abs().mean() < 5e-3
    w = torch.randn_like(lp_a)
    (lp_a * w).sum().backward()
    (lp_b * w).sum().backward()
    for (n, a), (_, b) in zip(lm.named_parameters(), other.named_parameters(), strict=True):
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
                     EngineSetup(dtype="bfloat16", lm_head_fp32=True, sleep_mode=True, seed=0,
                                 weight_transfer="ipc"))  # colocated: sleep mode + CUDA IPC
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


# ---- M1's repetition stop inside real vLLM (abort path) --------------------------------------
def _looping(path, scale):
    """The tiny model made to loop: its final norm scaled up peaks every next-token
    distribution, so a sample that falls into a cycle of confident tokens stays in it."""
    from safetensors.torch import load_file

    sd = load_file(f"{path}/model.safetensors")
    sd["model.norm.weight"] = sd["model.norm.weight"] * scale
    return sd


def test_vllm_abort_repetition_stop_fires_and_leaves_the_other_samples_unchanged(tiny_engine):
    from dataclasses import replace

    from safetensors.torch import load_file

    from rollout.base import SamplingConfig
    from rollout.repetition import first_repetition_stop

    path, eng = tiny_engine
    W, N = 64, 512
    prompts, seeds = [[5 + i, 6, 7, 8 + i] for i in range(16)], list(range(100, 116))
    rule = SamplingConfig(n=2, max_tokens=N, repetition_window=W, repetition_prob=0.99)
    try:
        for scale in (64.0, 96.0, 48.0, 128.0, 32.0):  # 64: 13 of 32 loop on CPU (fp32)
            eng.update_weights(_looping(path, scale))
            eng.decode_time = "off"
            free = eng.generate(prompts, replace(rule, repetition_window=0), seeds)  # rule off
            stops = [first_repetition_stop(c.logprobs, W, 0.99) for c in free]
            if 4 <= sum(s is not None for s in stops) <= len(stops) - 4:
                break
        else:
            pytest.fail(f"no norm scale made some samples loop and others not: {stops}")
        eng.decode_time = "abort"
        aborted = eng.generate(prompts, rule, seeds)
        eng.decode_time = "off"
        posthoc = eng.generate(prompts, rule, seeds)
    finally:
        eng.decode_time = "off"
        eng.update_weights(load_file(f"{path}/model.safetensors"))
    fired = [i for i, s in enumerate(stops) if s is not None]
    first_abort = min(stops[i] for i in fired) + 1  # the step the first sample left the batch
    same = [a.token_ids == f.token_ids[:len(a.token_ids)] and
            len(a.token_ids) == (len(f.token_ids) if s is None else s + 1)
            for a, f, s in zip(aborted, free, stops, strict=True)]
    print("repetition stop: scale", scale, "fired", len(fired), "of", len(stops),
          "identical to the rule-off sample", sum(same), "decoded abort / post hoc",
          sum(c.extra["engine_tokens"] for c in aborted), sum(c.extra["engine_tokens"] for c in posthoc))
    assert [c.prompt_index for c in aborted] == [c.prompt_index for c in free]
    for i, (f, a, p) in enumerate(zip(free, aborted, posthoc, strict=True)):
        # the post-hoc cut: the same decode as the rule off, cut where the rule fires
        assert p.token_ids == f.token_ids[:len(p.token_ids)] and p.extra["engine_tokens"] == len(f.token_ids), i
        assert p.finish_reason == ("repetition" if stops[i] is not None else f.finish_reason), i
        # until the first sample left the batch both decodes ran the same batch: same tokens
        k = min(first_abort, len(a.token_ids))
        assert a.token_ids[:k] == f.token_ids[:k], (i, k)
        # the abort path on its own sample: stopped at decode time right where the rule fires
        stop = first_repetition_stop(a.logprobs, W, 0.99)
        if a.finish_reason == "repetition":
            assert stop == len(a.token_ids) - 1 and a.extra["engine_finish"] == "abort", i
            assert stop + 1 <= a.extra["engine_tokens"] <= stop + 1 + 8, (i, stop, a.extra)
        else:
            assert stop is None and a.extra["engine_finish"] == a.finish_reason, i
            assert len(a.token_ids) == N or a.finish_reason == "stop", i
    # after the first abort the two decodes run different batches, and vLLM's kernels (picked
    # per batch size) change the logits in the last bits: a sample may then part from its
    # rule-off twin at a near tie (16 of 32 stayed identical to the end on an H200, session 5),
    # still drawn by the same seeded sampler; exact equality holds up to the first abort (above)
    assert sum(c.finish_reason == "repetition" for c in aborted) >= 4
    assert sum(c.extra["engine_tokens"] for c in aborted) < sum(len(c.token_ids) for c in free)
    # decode_time auto reads the KV capacity from vLLM: this batch fits (post hoc), a bigger one not
    kv = eng.kv_cache_tokens()
    assert kv >= 32 * (4 + N) and not eng.abort_pays(prompts, rule)
    assert eng.abort_pays([[5, 6, 7, 8]] * (kv // (2 * (4 + N)) + 1), rule)


# ---- weight sync: the engine ends with exactly the learner's weights ---------------------------
STACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def vllm_layout(sd: dict) -> dict:
    """A Hugging Face Qwen2 state dict in vLLM's parameter layout (q/k/v and gate/up stacked
    along dim 0, in vLLM's shard order)."""
    out, parts = {}, {}
    for name, t in sd.items():
        for fused, members in STACKED.items():
            hit = next((m for m in members if f".{m}." in name), None)
            if hit:
                parts.setdefault(name.replace(f".{hit}.", f".{fused}."), {})[hit] = t
                break
        else:
            out[name] = t
    for name, got in parts.items():
        members = STACKED[next(f for f in STACKED if f".{f}." in name)]
        out[name] = torch.cat([got[m] for m in members], 0)
    return out


def engine_checksums(eng, vocab: int) -> dict:
    """sha256 of every parameter of the engine's model, read in the engine process (rows past
    the tokenizer's vocabulary, vLLM's padding, left out), with dtype and shape."""
    def digest(worker):
        import hashlib

        model = worker.model_runner.get_model()
        out = {}
        for name, p in model.named_parameters():
            t = p.detach()
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                t = t[:vocab]
            t = t.contiguous().cpu()
            out[name] = (str(t.dtype), list(t.shape),
                         hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest())
        return out

    got = eng.llm.collective_rpc(digest)[0]  # tuples may come back as lists
    return {n: (d, list(shape), h) for n, (d, shape, h) in got.items()}


def checksums(sd: dict, like: dict) -> dict:
    """The same sha256s for a learner state dict, cast to the engine's dtype of each tensor."""
    import hashlib

    out = {}
    for name, t in vllm_layout(sd).items():
        dtype = getattr(torch, like[name][0].removeprefix("torch."))
        t = t.detach().to(dtype).contiguous().cpu()
        out[name] = (str(t.dtype), list(t.shape),
                     hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest())
    return out


def learner_weights(path: str, seed: int, device="cuda") -> dict:
    """A learner's state after some updates: every tensor of the checkpoint moved (bf16)."""
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(seed)
    return {k: (v.float() + 0.02 * torch.randn(v.shape, generator=g)).bfloat16().to(device)
            for k, v in load_file(f"{path}/model.safetensors").items()}


def test_ipc_weight_sync_leaves_the_engine_with_exactly_the_learners_weights(tiny_engine,
                                                                             monkeypatch):
    import types

    from safetensors.torch import load_file

    import rlhf.weight_sync as ws

    path, eng = tiny_engine
    vocab = load_file(f"{path}/model.safetensors")["lm_head.weight"].shape[0]
    start = engine_checksums(eng, vocab)
    original = load_file(f"{path}/model.safetensors")
    assert start == checksums(original, start)  # the checkpoint, every tensor
    try:
        # colocated, in process: CUDA tensors on the engine's GPU go over IPC (VLLMEngine)
        a = learner_weights(path, 1)
        eng.update_weights(a)
        got = engine_checksums(eng, vocab)
        assert got == checksums(a, start)
        assert all(got[n][2] != start[n][2] for n in start)  # every tensor changed
        # the run's learner side: IPCTransfer exports handles, the engine receives them
        b = learner_weights(path, 2)
        received = []

        class Engine:  # the rollout actor as IPCTransfer calls it (Ray stood in)
            class receive_weights:  # noqa: N801
                @staticmethod
                def remote(info, version):
                    received.append(version)
                    return eng.receive_weights(info)

        monkeypatch.setattr(ws, "ray", types.SimpleNamespace(get=lambda refs, timeout=None: refs))
        ws.IPCTransfer([Engine], version=7).send(b, ws.Channel(0))
        assert received == [7] and engine_checksums(eng, vocab) == checksums(b, start)
    finally:
        eng.update_weights(original)
    assert engine_checksums(eng, vocab) == start
    print("ipc: every one of", len(start), "engine tensors equal to the learner's (sha256)")


def _nccl_learner(path: str, port: int, bucket: int) -> None:
    """Learner rank 0 on GPU 1 (spawned): joins the group, broadcasts ``learner_weights(.., 3)``."""
    import rlhf.weight_sync as ws

    torch.cuda.set_device(1)
    channel = ws.Channel(0)
    channel.join(ws.NCCLGroup("127.0.0.1", port, world_size=2))
    ws.NCCLTransfer(bucket).send(learner_weights(path, 3, "cuda:1"), channel)


@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason="NCCL needs two GPUs: it refuses two ranks on one device")
def test_nccl_weight_sync_leaves_the_engine_with_exactly_the_learners_weights(tiny_engine):
    import multiprocessing as mp
    import socket
    import threading

    from safetensors.torch import load_file

    path, eng = tiny_engine  # the engine on GPU 0
    original = load_file(f"{path}/model.safetensors")
    vocab = original["lm_head.weight"].shape[0]
    start = engine_checksums(eng, vocab)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bucket = 1 << 20  # several buckets for this model
    learner = mp.get_context("spawn").Process(target=_nccl_learner, args=(path, port, bucket))
    learner.start()
    join = threading.Thread(target=eng.init_weight_transfer, args=("127.0.0.1", port, 1, 2))
    join.start()
    join.join(timeout=120)
    want = learner_weights(path, 3, "cpu")
    info = {"names": list(want), "dtype_names": ["bfloat16"] * len(want),
            "shapes": [list(t.shape) for t in want.values()], "packed": True,
            "packed_buffer_size_bytes": bucket}
    try:
        eng.receive_weights(info)
        learner.join(timeout=120)
        assert learner.exitcode == 0
        got = engine_checksums(eng, vocab)
        assert got == checksums(want, start) and all(got[n][2] != start[n][2] for n in start)
    finally:
        eng.update_weights(original)
