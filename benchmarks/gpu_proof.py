"""GPU proof of the distributed path (issue 5): ``rlhf train`` with an FSDP2 learner and a vLLM
engine in Ray actors, colocated on one GPU and separate on two (synchronous, and one step off:
``separate_async`` is ``train.async_mode=one_step``, issue 16), against raw ``vllm.LLM.generate``
on the same model and batches, all in one call.

Recipe: recipes/gpu/proof_0.5b.yaml (Qwen2.5-0.5B shape, random weights, 32 prompts x 8 samples
x 1,024 new tokens per step, FP32 head on both sides). Each phase runs in its own process, so a
failure in one leaves the others' numbers:

    python benchmarks/gpu_proof.py                       # model, raw, colocated, separate, table
    python benchmarks/gpu_proof.py --phases raw,colocated --steps 4
    python benchmarks/gpu_proof.py --phases report --file benchmarks/results/gpu_proof_h200.json
    python benchmarks/gpu_proof.py --phases model,separate,separate_async,report \
        --set rollout.max_new_tokens=4096 --set train.mini_batches=16   # issue 16's table

``raw``: a plain ``vllm.LLM`` with the engine's settings (bf16, FP32 head, same memory share and
context length) generates the prompts of steps 2..N with the driver's per-prompt seeds, stop ids
and ``logprobs=0`` (step 1's batch warms it up). ``colocated`` / ``separate``: the driver, with the
recipe's placement overridden. Step 1 of a run includes kernel JIT and the first weight sync's
setup, so the table averages steps 2..N. Writes benchmarks/results/gpu_proof_<gpu>.json.

The reward, :func:`decoded_bytes`, is synthetic: random weights solve no task.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RECIPE = "recipes/gpu/proof_0.5b.yaml"
PHASE_KEYS = ("time/generate", "time/score_adv", "time/old_logprobs", "time/train",
              "time/engine_sleep", "time/engine_wake", "time/weight_gather", "time/weight_sync",
              "time/step", "rollout/tokens_per_s", "memory/learner_peak_gib")


def decoded_bytes(response: str, task: dict) -> float:
    """Share of a response that decodes to text, saturating at 64 bytes (synthetic reward for
    a random-weight model: most of its 151,936 ids are not byte tokens and decode to nothing)."""
    return min(1.0, len(response.encode("utf-8")) / 64)


PLACEMENTS = {"colocated": ("colocated", "off"), "separate": ("separate", "off"),
              "separate_async": ("separate", "one_step")}  # phase -> placement, async_mode


def load(work: Path, phase: str, steps: int, extra: list[str] = ()):
    from rlhf.config import load_recipe

    placement, mode = PLACEMENTS[phase]
    over = [f"model.path={work / 'model'}", "model.build=null", f"placement.mode={placement}",
            f"train.async_mode={mode}", f"run.name=proof_{phase}", f"run.output_dir={work / 'runs'}",
            f"run.steps={steps}", *extra]
    return load_recipe(RECIPE, over)


def phase_model(work: Path) -> None:
    from rlhf.config import load_recipe
    from rlhf.models import build_tiny_model

    if not (work / "model" / "config.json").exists():
        build_tiny_model(work / "model", **load_recipe(RECIPE).model.build.model_dump())


def step_batches(recipe, tokenizer, steps: int):
    """The prompts and per-prompt seeds the driver uses at each step (same stream, same seeds)."""
    from rlhf.driver.data import PromptStream, load_source, longest_prompt, tokenize_prompts
    from rlhf.driver.samples import next_batch

    ds = tokenize_prompts(load_source(recipe.data.train), tokenizer)
    stream = PromptStream(len(ds), recipe.data.prompts_per_step, recipe.run.seed, recipe.data.shuffle)
    batches = [next_batch(stream, ds, step, recipe.run.seed) for step in range(steps)]
    return [(b.prompt_ids, b.seeds) for b in batches], longest_prompt(ds)


def phase_raw(work: Path, steps: int, extra: list[str]) -> dict:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from rollout.base import model_stop_ids

    r = load(work, "colocated", steps, extra)
    model = str(work / "model")
    batches, longest = step_batches(r, AutoTokenizer.from_pretrained(model), steps)
    ro = r.rollout
    llm = LLM(model=model, dtype="bfloat16", hf_overrides={"head_dtype": "float32"},
              gpu_memory_utilization=ro.engine.gpu_memory_utilization,
              max_model_len=longest + ro.max_new_tokens, seed=r.run.seed)
    eos = model_stop_ids(model)
    rows = []
    for step, (prompt_ids, seeds) in enumerate(batches):
        params = [SamplingParams(n=ro.samples_per_prompt, temperature=ro.temperature,
                                 max_tokens=ro.max_new_tokens, logprobs=0, seed=s,
                                 stop_token_ids=eos) for s in seeds]
        t0 = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params,
                            use_tqdm=False)
        dt = time.perf_counter() - t0
        toks = sum(len(c.token_ids) for o in outs for c in o.outputs)
        rows.append({"step": step + 1, "tokens": toks, "seconds": dt, "tok_s": toks / dt})
        print(json.dumps(rows[-1]), flush=True)
    return {"steps": rows}


def phase_train(work: Path, phase: str, steps: int, extra: list[str]) -> dict:
    from rlhf.driver import train

    r = load(work, phase, steps, extra)
    t0 = time.perf_counter()
    summary = train(r)
    wall = time.perf_counter() - t0
    lines = Path(summary["run_dir"], "metrics.jsonl").read_text().splitlines()
    rows = [m for m in map(json.loads, lines) if m.get("kind") == "train"]
    return {"wall_s": wall, "steps": [{k: m.get(k) for k in ("step", "reward/mean", "loss",
                                                          "grad_norm", "rollout/tokens",
                                                          "mismatch/pearson", "train/staleness",
                                                          *PHASE_KEYS)}
                                       for m in rows]}


def mean_after_first(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows[1:] if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def report(res: dict) -> str:
    raw = mean_after_first(res.get("raw", {}).get("steps", []), "tok_s")
    lines = [f"GPU proof on {res.get('gpu')}: Qwen2.5-0.5B shape, 32 x 8 x 1,024 new tokens per "
             "step, FP32 head; mean of steps 2..N", "",
             "| | " + " | ".join(p for p in PLACEMENTS if p in res) + " |",
             "|---|" + "---|" * sum(p in res for p in PLACEMENTS)]
    runs = [res[p]["steps"] for p in PLACEMENTS if p in res]
    for key in PHASE_KEYS:
        vals = [mean_after_first(rows, key) for rows in runs]
        if any(v is not None for v in vals):
            lines.append(f"| {key} | " + " | ".join("-" if v is None else f"{v:,.3f}" if v < 100
                                                     else f"{v:,.0f}" for v in vals) + " |")
    if raw:
        lines.append("| raw vLLM tok/s, same batches | " + " | ".join(f"{raw:,.0f}" for _ in runs) + " |")
        lines.append("| rollout path / raw | " + " | ".join(
            f"{mean_after_first(rows, 'rollout/tokens_per_s') / raw:.1%}" for rows in runs) + " |")
    if "separate" in res and "separate_async" in res:
        sync, one = (mean_after_first(res[p]["steps"], "time/step") for p in ("separate", "separate_async"))
        if sync and one:
            lines += ["", f"one-step-off round / synchronous separate round: {one / sync:.2f}x"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="model,raw,colocated,separate,report")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--work", default="/tmp/gpu_proof")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--file", help="results JSON (default: OUT/gpu_proof_<gpu>.json)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for the training phases (repeatable)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase:  # child process
        fn = (lambda: phase_raw(work, args.steps, args.set)) if args.phase == "raw" else (
            lambda: phase_train(work, args.phase, args.steps, args.set))
        (work / f"{args.phase}.json").write_text(json.dumps(fn(), indent=2))
        return
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    out = Path(args.file or Path(args.out) / f"gpu_proof_{'h200' if 'H200' in gpu else 'h100' if 'H100' in gpu else 'gpu'}.json")
    res = json.loads(out.read_text()) if out.exists() else {}
    if torch.cuda.is_available():
        res.update(gpu=gpu, gpus=torch.cuda.device_count())
    for phase in args.phases.split(","):
        if phase == "model":
            phase_model(work)
        elif phase == "raw" or phase in PLACEMENTS:
            t0 = time.perf_counter()
            sets = [a for kv in args.set for a in ("--set", kv)]
            rc = subprocess.call([sys.executable, __file__, "--phase", phase, "--work", str(work),
                                  "--steps", str(args.steps), *sets], env=os.environ.copy())
            print(f"phase {phase}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
            if rc == 0:
                res[phase] = json.loads((work / f"{phase}.json").read_text())
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2))
        elif phase == "report":
            print(report(res))


if __name__ == "__main__":
    main()
