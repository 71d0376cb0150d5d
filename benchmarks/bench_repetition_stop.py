"""M1's decode-time repetition stop where it should save time (issue 13 item 5): a KV-limited
batch with more requests than fit at once and samples that loop, the abort path
(``decode_time: abort``) against the post-hoc cut (``decode_time: off``) on one engine, in one call.

Model: the Qwen2.5-0.5B shape of benchmarks/bench_rollout.py (random bf16 weights, FP32 head).
To make it loop, its final RMSNorm weight is raised from 16 (peaked like a trained model; the rule
never fires) until about ``--loop-share`` of the samples fire the rule: the scale is picked in
the run, by the post-hoc rule on a probe batch (:func:`pick_scale`), since how often a random
model loops at temperature 1 is found, not known.

KV limit: ``num_gpu_blocks_override`` = ``--kv-seqs`` full-length sequences (prompt + new tokens,
16-token blocks), so ``--prompts`` requests do not fit at once: vLLM admits what fits and
preempts (recomputes) the rest. A sample the abort path stops frees its blocks for a waiting one;
the post-hoc cut decodes every loop to ``--new`` tokens first.

Rows (same prompts and per-prompt seeds; modes alternated, ``--repeats`` each):
  looping  model made to loop: abort vs post hoc (wall time, tokens decoded, samples/s)
  control  the model at norm 16 (nothing loops): what the abort path costs when it never fires
           (``--control-repeats``)

    python benchmarks/bench_repetition_stop.py                  # writes $OUT or benchmarks/results
    python benchmarks/bench_repetition_stop.py --prompts 64 --new 512 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_rollout import MODEL_DIR, NORM_SCALE, build_model, prompts  # noqa: E402

SCALES = (24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0, 512.0, 1024.0)
BLOCK = 16  # vLLM's KV block size (tokens)


def pick_scale(share_at: Callable[[float], float], target: float, scales=SCALES,
               max_probes: int = 5) -> tuple[float, dict[float, float]]:
    """The scale whose share of firing samples is closest to ``target``, by bisection over
    ``scales`` (the share grows with the scale; ties go to the later probe, nearer where the
    bisection ended); returns it and every probe's share."""
    lo, hi, seen = 0, len(scales) - 1, {}
    while lo <= hi and len(seen) < max_probes:
        mid = (lo + hi) // 2
        seen[scales[mid]] = share = share_at(scales[mid])
        if share < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return min(reversed(list(seen)), key=lambda s: abs(seen[s] - target)), seen


def state_dict(model_dir: str, norm_scale: float) -> dict:
    from safetensors.torch import load_file

    sd = load_file(str(Path(model_dir, "model.safetensors")))
    sd["model.norm.weight"] = torch.full_like(sd["model.norm.weight"], norm_scale)
    return {k: v.cuda() for k, v in sd.items()}  # CUDA tensors: loaded over IPC


def timed(engine, mode: str, batch, seeds, sampling) -> dict:
    engine.decode_time = mode
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = engine.generate(batch, sampling, seeds)
    dt = time.perf_counter() - t0
    decoded = sum(c.extra.get("engine_tokens", len(c.token_ids)) for c in outs)
    return {"mode": mode, "seconds": dt, "samples": len(outs), "samples_per_s": len(outs) / dt,
            "tokens_decoded": decoded, "tokens_kept": sum(len(c.token_ids) for c in outs),
            "decoded_tok_s": decoded / dt,
            "finish": {r: sum(c.finish_reason == r for c in outs) for r in ("stop", "length", "repetition")},
            "aborted": sum(c.extra.get("engine_finish") == "abort" for c in outs),
            "samples_out": [c.token_ids for c in outs]}


def compare(engine, batch, seeds, sampling, repeats: int) -> dict:
    """abort and post hoc, alternated (the first of each pair swaps every repeat)."""
    runs: dict[str, list] = {"abort": [], "off": []}
    for r in range(repeats):
        for mode in (("abort", "off") if r % 2 == 0 else ("off", "abort")):
            runs[mode].append(timed(engine, mode, batch, seeds, sampling))
            print(json.dumps({k: v for k, v in runs[mode][-1].items() if k != "samples_out"}),
                  flush=True)
    a, p = runs["abort"][-1].pop("samples_out"), runs["off"][-1].pop("samples_out")
    for rs in runs.values():
        for x in rs:
            x.pop("samples_out", None)
    best = {m: min(x["seconds"] for x in rs) for m, rs in runs.items()}
    return {"abort": runs["abort"], "posthoc": runs["off"],
            "best_s": {"abort": best["abort"], "posthoc": best["off"]},
            "speedup_abort": best["off"] / best["abort"],
            "identical_samples": sum(x == y for x, y in zip(a, p, strict=True)), "n": len(a)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=1024, help="max new tokens per sample")
    ap.add_argument("--window", type=int, default=128, help="M1's window (M1: 3000 of 40K+)")
    ap.add_argument("--prob", type=float, default=0.99)
    ap.add_argument("--kv-seqs", type=int, default=64,
                    help="full-length sequences the KV cache holds (the KV limit)")
    ap.add_argument("--loop-share", type=float, default=0.5, help="target share of looping samples")
    ap.add_argument("--probe", type=int, default=32, help="prompts of each scale probe")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode, looping model")
    ap.add_argument("--control-repeats", type=int, default=1, help="the same, control model")
    ap.add_argument("--no-control", action="store_true", help="skip the non-looping control")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    from rollout.base import EngineSetup, SamplingConfig
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine

    model = build_model(MODEL_DIR)
    max_len = args.prompt_len + args.new
    blocks = -(-args.kv_seqs * max_len // BLOCK)
    t0 = time.perf_counter()
    engine = VLLMEngine(model, VLLMEngineConfig(gpu_memory_utilization=0.3, max_model_len=max_len),
                        EngineSetup(dtype="bfloat16", lm_head_fp32=True, weight_transfer="ipc"),
                        skip_tokenizer_init=True, num_gpu_blocks_override=blocks)
    gpu = torch.cuda.get_device_name()
    res: dict = {"gpu": gpu, "engine_start_s": time.perf_counter() - t0, "args": vars(args),
                 "kv_blocks": blocks, "kv_tokens": blocks * BLOCK}
    print(json.dumps({k: v for k, v in res.items() if k != "args"}), flush=True)
    sampling = SamplingConfig(n=1, temperature=1.0, max_tokens=args.new,
                              repetition_window=args.window, repetition_prob=args.prob)
    batch, seeds = prompts(args.prompts, args.prompt_len, 1), list(range(args.prompts))
    timed(engine, "abort", batch[:8], seeds[:8], SamplingConfig(n=1, max_tokens=32))  # JIT warm-up
    timed(engine, "off", batch[:8], seeds[:8], SamplingConfig(n=1, max_tokens=32))

    def share_at(scale: float) -> float:
        engine.update_weights(state_dict(model, scale))
        out = timed(engine, "off", batch[:args.probe], seeds[:args.probe], sampling)
        print(json.dumps({"probe_scale": scale, "finish": out["finish"]}), flush=True)
        return out["finish"]["repetition"] / out["samples"]

    scale, probes = pick_scale(share_at, args.loop_share)
    res["loop_norm_scale"], res["probes"] = scale, probes
    engine.update_weights(state_dict(model, scale))
    res["looping"] = compare(engine, batch, seeds, sampling, args.repeats)
    if not args.no_control:
        engine.update_weights(state_dict(model, NORM_SCALE))
        res["control"] = compare(engine, batch, seeds, sampling, args.control_repeats)
    tag = "h200" if "H200" in gpu else "h100" if "H100" in gpu else "gpu"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, f"repetition_stop_{tag}{args.tag}.json").write_text(json.dumps(res, indent=2))
    print(f"\n{gpu}: {args.prompts} prompts x {args.new} new tokens, KV for {args.kv_seqs} "
          f"full sequences ({blocks} blocks), window {args.window}, p {args.prob}")
    print(f"{'batch':>28} | {'mode':>7} | {'wall s':>7} | {'decoded':>8} | {'kept':>8} | "
          f"{'samples/s':>9} | finish (stop/length/repetition)")
    for row, label in (("looping", f"looping (norm {scale:g})"), ("control", f"control (norm {NORM_SCALE:g})")):
        if row not in res:
            continue
        for mode, key in (("abort", "abort"), ("posthoc", "posthoc")):
            x = min(res[row][key], key=lambda r: r["seconds"])
            f = x["finish"]
            print(f"{label:>28} | {mode:>7} | {x['seconds']:7.2f} | {x['tokens_decoded']:8d} | "
                  f"{x['tokens_kept']:8d} | {x['samples_per_s']:9.2f} | "
                  f"{f['stop']}/{f['length']}/{f['repetition']}")
        print(f"{'':>28}   abort speed-up {res[row]['speedup_abort']:.2f}x, identical samples "
              f"{res[row]['identical_samples']}/{res[row]['n']}")


if __name__ == "__main__":
    main()
