"""Learner step on long sequences: our chunked FP32 LM head vs the naive full-logits step.

One train step = forward + backward + AdamW on the Qwen2.5-0.5B shape (hidden 896, 24 layers,
14 heads, 2 KV heads, vocab 151936, tied embeddings, random bf16 weights), activation
checkpointing on in all. "naive_fp32": full [T, V] logits from a float32 matmul of upcast
operands, log-softmax, gather (the reference in shared/bench/anchor_bench.py, "fp32 logits");
"naive_bf16": the same from bf16 logits (the head in bf16, cast to float32). "ours":
rlhf.learner.policy.PolicyModel, FP32 head (bf16 operands, float32 accumulation and logits, as vLLM's
FP32 head) in chunks, recomputed in the backward pass, padded rows; "packed": the same as one
packed row (rlhf/learner/batching.py: sequences back to back, PyTorch's varlen FlashAttention),
"packed_auto" checkpointing only the layers the memory estimate asks for (rlhf/learner/memory.py),
"packed_full" every layer. Options after a "+": "+varlen" runs a one-sequence row through the
varlen FlashAttention kernel instead of the dense cuDNN-first one (rlhf/learner/attention.py),
"+compile" compiles the layers' norms and MLPs (``train.compile``, rlhf/learner/policy.py), e.g.
``--kinds packed_auto,packed_auto+varlen,packed_auto+compile``. Prints a table and writes
benchmarks/results/learner_<gpu><tag>.json.

MFU = (6 x params x tokens + 6 x layers x hidden x sum of squared sequence lengths) / step time /
989 TFLOP/s (dense bf16, H100/H200 SXM): the matmuls of every weight (forward and backward) plus
causal attention's two products (half the T x T square); activation recomputation not counted.

    python benchmarks/bench_learner.py [--shapes 8x2048,1x16384,1x65536,1x81920] [--chunk 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def build_model(kind: str = "ours", tokens: int = 0, chunk: int = 4096):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from rlhf.learner.attention import set_single_sequence_kernel, use_packed_attention
    from rlhf.learner.memory import checkpoint_layers, layers_to_checkpoint
    from rlhf.learner.policy import compile_layers

    kind, *opts = kind.split("+")
    set_single_sequence_kernel("varlen" if "varlen" in opts else "cudnn")

    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                      num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=131072)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    n = cfg.num_hidden_layers
    if kind == "packed_auto":
        n = layers_to_checkpoint(cfg, tokens, torch.cuda.get_device_properties(0).total_memory,
                                 sum(p.numel() for p in lm.parameters()), 1, chunk)
    if kind.startswith("packed"):
        use_packed_attention(lm)
    checkpoint_layers(lm, lm.model.layers, n)
    if "compile" in opts:
        compile_layers(lm.model.layers)
    lm.checkpointed = n
    return lm.cuda().train()


def naive_loss(lm, ids, fp32_head: bool):
    """Full [B, T, V] logits: bf16 head cast to float32 (``naive_bf16``), or the head as a
    float32 matmul of upcast operands (``naive_fp32``, shared/bench/anchor_bench.py)."""
    h = lm.model(input_ids=ids).last_hidden_state  # [B, T, H]
    w = lm.lm_head.weight  # [V, H]
    logits = h.float() @ w.float().t() if fp32_head else (h @ w.t()).float()  # [B, T, V] f32
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return -logp.mean()


def packed_loss(policy, ids):
    from rlhf.learner.batching import TrainSample, pack

    B, T = ids.shape
    pb = pack([TrainSample(row.tolist(), 1) for row in ids.cpu()], list(range(B)))
    lp, _ = policy(pb.to(ids.device))
    return -lp.mean()


def ours_loss(policy, ids):
    B, T = ids.shape
    lp, _ = policy(ids, torch.ones_like(ids), torch.ones(B, dtype=torch.long, device=ids.device),
                   torch.full((B,), T - 1, device=ids.device))
    return -lp.mean()


def run_case(kind: str, lm, B: int, T: int, chunk: int, steps: int) -> dict:
    from rlhf.learner.policy import PolicyModel

    policy = PolicyModel(lm, lm_head_fp32=True, chunk_size=chunk)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-6, betas=(0.9, 0.95), eps=1e-15)
    fn = ((lambda ids: ours_loss(policy, ids)) if kind == "ours"
          else (lambda ids: packed_loss(policy, ids)) if kind.startswith("packed")
          else (lambda ids: naive_loss(lm, ids, fp32_head=kind == "naive_fp32")))
    g = torch.Generator(device="cuda").manual_seed(T)
    times = []
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        for i in range(steps + 1):
            ids = torch.randint(0, 151936, (B, T), device="cuda", generator=g)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = fn(ids)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if i:  # the first step warms up kernels and allocator
                times.append(time.perf_counter() - t0)
        assert torch.isfinite(loss)
    except torch.OutOfMemoryError:
        opt.zero_grad(set_to_none=True)
        del opt
        torch.cuda.empty_cache()
        return {"kind": kind, "shape": f"{B}x{T}", "oom": True}
    t = statistics.median(times)
    params = sum(p.numel() for p in lm.parameters())
    gpu = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), 989e12)
    cfg = lm.config
    flops = 6 * params * B * T + 6 * cfg.num_hidden_layers * cfg.hidden_size * B * T * T
    out = {"kind": kind, "shape": f"{B}x{T}", "oom": False, "step_s": t, "tok_s": B * T / t,
           "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "checkpointed_layers": lm.checkpointed,
           "mfu": flops / t / peak, "mfu_6pt": 6 * params * B * T / t / peak, "params": params}
    del opt
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="8x2048,64x1024,1x16384,1x65536,1x81920")
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--kinds", default="packed_auto,packed_full,ours,naive_fp32")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    gpu = torch.cuda.get_device_name()
    rows = []
    for shape in args.shapes.split(","):
        B, T = map(int, shape.split("x"))
        for kind in args.kinds.split(","):
            lm = build_model(kind, B * T, args.chunk)
            r = run_case(kind, lm, B, T, args.chunk, args.steps)
            del lm
            torch.cuda.empty_cache()
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\nlearner step, Qwen2.5-0.5B shape, bf16 weights, {gpu}; MFU with attention (6PT only)")
    print(f"{'shape':>9} {'kind':>20} {'AC layers':>9} {'tok/s':>9} {'peak GiB':>9} {'MFU':>14}")
    for r in rows:
        if r["oom"]:
            print(f"{r['shape']:>9} {r['kind']:>20} {'':>9} {'OOM':>9}")
        else:
            print(f"{r['shape']:>9} {r['kind']:>20} {r['checkpointed_layers']:>9} {r['tok_s']:9.0f} "
                  f"{r['peak_gib']:9.1f} {r['mfu']:6.1%} ({r['mfu_6pt']:.1%})")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tag = "h200" if "H200" in gpu else "h100" if "H100" in gpu else "gpu"
    Path(args.out, f"learner_{tag}{args.tag}.json").write_text(json.dumps({"gpu": gpu, "chunk": args.chunk,
                                                                 "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
