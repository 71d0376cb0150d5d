"""Rollout path vs raw vLLM, the decode-time repetition stop, weight sync, sleep/wake and the
train/inference mismatch, on one GPU. One engine per process (``--head``, ``--processor``).

Model: the Qwen2.5-0.5B shape (hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads,
vocab 151936, tied embeddings, rope 1e6), random bf16 weights, built here (no download). The
final RMSNorm weight is set to 16 (logit std ~0.6 -> ~9.6), so that next-token distributions are
peaked like a trained model's (mean entropy ~1.0 nat, mean sampled-token probability ~0.6,
measured on CPU for this seed) instead of near-uniform. The degenerate model for the
repetition demo sets it to 1024 (almost every token has p > 0.99) and decodes greedily.

Steps (``--steps``, comma list):
  throughput  raw ``vllm.LLM.generate`` (TokensPrompt, logprobs=0, per-request seed, ignore_eos)
              vs ``VLLMEngine.generate`` on the same engine and prompts, with the repetition rule
              active (window = min(3000, new/2), p 0.99: it never fires on this model at T=1)
              and off; 256 x 1,024 and 32 x 4,096 new tokens by default (``--shapes``);
              ``--long``: 32 x 8,192 and 4 x 40,000 (rule on only: off is the same decode).
  repetition  the degenerate model (weights swapped in with update_weights), greedy, 16 x 2,048,
              window 256: finish reasons, lengths and time with the rule on vs off.
  sync        update_weights with a full bf16 state dict: on the engine's GPU (IPC: the
              engine is set up with weight_transfer="ipc") and from CPU (collective_rpc).
  sleep       sleep(level 1) / wake_up times, GPU memory freed, greedy output unchanged.
  mismatch    rlhf.mismatch.measure_engine: learner (PolicyModel, bf16 weights, head in the
              engine's precision) vs sampler logprobs of 64 x 512 sampled tokens.
Writes benchmarks/results/rollout_<gpu>_<head>_<processor>.json (or under --out).

    python benchmarks/bench_rollout.py --head fp32 --processor on
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

MODEL_DIR = "/tmp/bench_qwen05b"
NORM_SCALE, DEGENERATE_SCALE = 16.0, 1024.0


def build_model(path: str) -> str:
    from transformers import AutoModelForCausalLM, Qwen2Config

    if Path(path, "config.json").exists():
        return path
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                      num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      tie_word_embeddings=True, rope_theta=1e6, max_position_embeddings=131072,
                      eos_token_id=151643, bos_token_id=151643)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    with torch.no_grad():
        lm.model.norm.weight.fill_(NORM_SCALE)
    lm.save_pretrained(path)
    return path


def prompts(n: int, length: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 150000, (n, length), generator=g).tolist()


def time_raw(llm, batch, new_tokens) -> dict:
    from vllm import SamplingParams, TokensPrompt

    params = [SamplingParams(n=1, temperature=1.0, max_tokens=new_tokens, logprobs=0,
                             ignore_eos=True, seed=i, detokenize=False) for i in range(len(batch))]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in batch], params, use_tqdm=False)
    dt = time.perf_counter() - t0
    toks = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"tokens": toks, "seconds": dt, "tok_s": toks / dt}


def time_ours(engine, batch, new_tokens, window, temperature=1.0) -> dict:
    from rollout.base import SamplingConfig

    s = SamplingConfig(n=1, temperature=temperature, max_tokens=new_tokens,
                       repetition_window=window, repetition_prob=0.99)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = engine.generate(batch, s, seeds=list(range(len(batch))))
    dt = time.perf_counter() - t0
    toks = sum(len(c.token_ids) for c in outs)
    reasons = {r: sum(c.finish_reason == r for c in outs) for r in ("stop", "length", "repetition")}
    lens = sorted(len(c.token_ids) for c in outs)
    # stopped inside vLLM: the engine's sample ended on the forced EOS right after the cut
    at_decode = sum(c.finish_reason == "repetition" and (
        c.extra.get("engine_finish") == "abort" or (c.extra.get("engine_finish") == "stop"
                                                    and c.extra.get("engine_tokens") == len(c.token_ids) + 1))
        for c in outs)
    return {"tokens": toks, "seconds": dt, "tok_s": toks / dt, "finish": reasons,
            "stopped_at_decode": at_decode, "engine_tokens": sum(c.extra.get("engine_tokens", 0)
                                                                 for c in outs),
            "len_min": lens[0], "len_max": lens[-1], "window": window}


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """``"256x128x1024,32x256x8192"`` -> [(prompts, prompt tokens, new tokens), ...]."""
    try:
        return [tuple(int(x) for x in part.split("x")) for part in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise SystemExit(f"--shapes: expected PROMPTSxPROMPT_LENxNEW_TOKENS[,...], got {text!r}") from None


def step_throughput(engine, res, shapes, rule_off: bool) -> None:
    time_raw(engine.llm, prompts(8, 32, 0), 16)  # JIT of the logprob / sampling kernels
    time_ours(engine, prompts(8, 32, 0), 16, 8)
    for n, plen, new in shapes:
        batch = prompts(n, plen, n)
        window = min(3000, new // 2)
        row = {"shape": f"{n}x{plen}->{new}", "raw": time_raw(engine.llm, batch, new),
               "ours_rep": time_ours(engine, batch, new, window)}
        row["ratio_rep"] = row["ours_rep"]["tok_s"] / row["raw"]["tok_s"]
        if rule_off:  # the same decode with the post-hoc cut skipped
            row["ours_norep"] = time_ours(engine, batch, new, 0)
            row["ratio_norep"] = row["ours_norep"]["tok_s"] / row["raw"]["tok_s"]
        res["throughput"].append(row)
        print(json.dumps(row), flush=True)


def _state_dict(model_dir: str, device: str, norm_scale: float | None = None) -> dict:
    from safetensors.torch import load_file

    sd = load_file(str(Path(model_dir, "model.safetensors")))
    if norm_scale is not None:
        sd["model.norm.weight"] = torch.full_like(sd["model.norm.weight"], norm_scale)
    return {k: v.to(device) for k, v in sd.items()}


def step_repetition(engine, model_dir, res) -> None:
    engine.update_weights(_state_dict(model_dir, "cuda", DEGENERATE_SCALE))
    batch = prompts(16, 32, 3)
    time_ours(engine, prompts(4, 32, 4), 64, 0, temperature=0.0)  # warm-up of the greedy path
    off = time_ours(engine, batch, 2048, 0, temperature=0.0)
    on = time_ours(engine, batch, 2048, 256, temperature=0.0)
    engine.update_weights(_state_dict(model_dir, "cuda"))  # back to the benchmark model
    res["repetition"] = {"model": f"final norm weight {DEGENERATE_SCALE}, greedy", "window": 256,
                         "prob": 0.99, "rule_on": on, "rule_off": off,
                         "time_saved": 1 - on["seconds"] / off["seconds"]}
    print(json.dumps(res["repetition"]), flush=True)


def step_sync(engine, model_dir, res) -> None:
    out = {}
    for where in ("cuda", "cpu"):
        sd = _state_dict(model_dir, where)
        engine.update_weights(sd)  # warm-up
        times = []
        for _ in range(3 if where == "cuda" else 2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            engine.update_weights(sd)
            times.append(time.perf_counter() - t0)
        out[where] = {"seconds": times, "median": sorted(times)[len(times) // 2],
                      "path": "ipc" if where == "cuda" and engine.weight_transfer == "ipc"
                      else "collective_rpc"}
        del sd
    out["tensors"] = len(_state_dict(model_dir, "cpu"))
    res["weight_sync"] = out
    print(json.dumps(out), flush=True)


def step_sleep(engine, res) -> None:
    from rollout.base import SamplingConfig

    batch = prompts(4, 32, 5)
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=64, repetition_window=0)
    before = [c.token_ids for c in engine.generate(batch, greedy)]
    free0 = torch.cuda.mem_get_info()[0]
    t0 = time.perf_counter()
    engine.sleep()
    t_sleep = time.perf_counter() - t0
    free1 = torch.cuda.mem_get_info()[0]
    t0 = time.perf_counter()
    engine.wake_up()
    t_wake = time.perf_counter() - t0
    after = [c.token_ids for c in engine.generate(batch, greedy)]
    res["sleep"] = {"sleep_s": t_sleep, "wake_s": t_wake, "freed_gib": (free1 - free0) / 2**30,
                    "same_greedy_output": before == after}
    print(json.dumps(res["sleep"]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--head", choices=["bf16", "fp32"], default="fp32")
    ap.add_argument("--processor", choices=["on", "off", "abort"], default="on",
                    help="decode-time repetition stop: on = logits processor (vLLM's V1 model "
                         "runner), abort = per-step streaming + abort (V2 runner), off = post hoc")
    ap.add_argument("--steps", default="throughput,repetition,sync,sleep,mismatch")
    ap.add_argument("--shapes", default="256x128x1024,32x256x4096",
                    help="throughput batches, PROMPTSxPROMPT_LENxNEW_TOKENS[,...]")
    ap.add_argument("--long", action="store_true",
                    help="long traces instead: 32 x 8,192 and 4 x 40,000 new tokens (rule on only)")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    from rollout.base import EngineSetup
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine

    model = build_model(MODEL_DIR)
    steps = args.steps.split(",")
    shapes = parse_shapes("32x256x8192,4x256x40000" if args.long else args.shapes)
    t0 = time.perf_counter()
    options = VLLMEngineConfig(
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=max(p + n for _, p, n in shapes) + 16,
        decode_time={"on": "processor", "off": "off", "abort": "abort"}[args.processor])
    setup = EngineSetup(dtype="bfloat16", lm_head_fp32=args.head == "fp32",
                        sleep_mode="sleep" in steps, weight_transfer="ipc")
    engine = VLLMEngine(model, options, setup, skip_tokenizer_init=True)
    gpu = torch.cuda.get_device_name()
    res = {"gpu": gpu, "head": args.head, "processor": args.processor,
           "engine_start_s": time.perf_counter() - t0, "throughput": []}
    print(json.dumps({"engine_start_s": res["engine_start_s"]}), flush=True)
    for step in steps:
        try:
            if step == "throughput":
                step_throughput(engine, res, shapes, rule_off=not args.long)
            elif step == "repetition":
                step_repetition(engine, model, res)
            elif step == "sync":
                step_sync(engine, model, res)
            elif step == "sleep":
                step_sleep(engine, res)
            elif step == "mismatch":
                from rlhf.mismatch import measure_engine

                res["mismatch"] = measure_engine(engine, model, args.head == "fp32")
                print(json.dumps(res["mismatch"]), flush=True)
        except Exception as exc:  # keep the other steps' numbers
            res[f"{step}_error"] = repr(exc)
            print(f"step {step} failed: {exc!r}", flush=True)
        tag = "h200" if "H200" in gpu else "h100" if "H100" in gpu else "gpu"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, f"rollout_{tag}_{args.head}_{args.processor}{args.tag}.json").write_text(
            json.dumps(res, indent=2))
    print(f"\nvLLM rollout, Qwen2.5-0.5B shape, {args.head} head, repetition processor "
          f"{args.processor}, {gpu}; engine start {res['engine_start_s']:.0f} s")
    for r in res["throughput"]:
        off = (f" | ours, rule off {r['ours_norep']['tok_s']:7.0f} ({r['ratio_norep']:.1%})"
               if "ours_norep" in r else "")
        print(f"{r['shape']:>16}: raw {r['raw']['tok_s']:7.0f} tok/s | ours, rule on "
              f"{r['ours_rep']['tok_s']:7.0f} ({r['ratio_rep']:.1%}){off}")
    if "repetition" in res:
        r = res["repetition"]
        print(f"degenerate model, greedy 16 x 2048, window 256: rule on {r['rule_on']['finish']} "
              f"{r['rule_on']['seconds']:.2f} s vs off {r['rule_off']['seconds']:.2f} s")
    if "weight_sync" in res:
        w = res["weight_sync"]
        print(f"weight sync: GPU tensors ({w['cuda']['path']}) {w['cuda']['median']:.3f} s, "
              f"CPU tensors ({w['cpu']['path']}) {w['cpu']['median']:.3f} s")
    if "sleep" in res:
        print(f"sleep/wake: {res['sleep']}")
    if "mismatch" in res:
        m = res["mismatch"]
        print(f"mismatch ({m['tokens']} tokens): pearson {m['pearson']:.5f}, mean|dp| "
              f"{m['prob_abs_diff']:.2e}, mean|dlogp| {m['logprob_abs_diff']:.4f}, "
              f"mean p {m['sampled_prob_mean']:.3f}")


if __name__ == "__main__":
    main()
