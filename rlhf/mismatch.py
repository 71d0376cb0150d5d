"""M1's train/inference mismatch, measured: ``rlhf mismatch RECIPE [overrides]``.

For the recipe's model, once with the LM head in bf16 and once in FP32 *on both sides*
(enabling it on one side only makes the mismatch worse): the vLLM engine samples responses and
returns the raw log-probabilities of the sampled tokens (before temperature and top-p); the
learner's :class:`rlhf.learner.policy.PolicyModel` (bf16 weights, head in bf16, or chunked FP32 as in
training) scores the same tokens. Printed per head: :func:`rlhf.learner.stats.mismatch_stats`,
the statistics the learner logs every step as ``mismatch/*``.

Each head runs in its own process, so that one vLLM engine's GPU memory is gone before the next
starts. Prompts are random token ids (no tokenizer or data needed).

Shapes: ``T`` sampled tokens over all responses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlhf.learner.stats import mismatch_stats


def random_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 150000), (n, length), generator=g).tolist()


@torch.no_grad()
def learner_logprobs(model_path: str, fp32_head: bool, prompts: list[list[int]], completions,
                     chunk_size: int = 4096) -> torch.Tensor:
    """PolicyModel (bf16 weights) log-probabilities of the completions' tokens: [T]."""
    from transformers import AutoModelForCausalLM

    from rlhf.learner.policy import PolicyModel

    lm: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16,
                                                   attn_implementation="sdpa")
    lm = lm.cuda().eval()
    policy = PolicyModel(lm, lm_head_fp32=fp32_head, chunk_size=chunk_size)
    out = []
    for c in completions:
        if not c.token_ids:
            continue
        ids = torch.tensor([prompts[c.prompt_index] + c.token_ids], device="cuda")  # [1, T_seq]
        lp, _ = policy(ids, torch.ones_like(ids), torch.tensor([len(prompts[c.prompt_index])]),
                       torch.tensor([len(c.token_ids)]))
        out.append(lp[0, :len(c.token_ids)].float().cpu())
    del policy, lm
    torch.cuda.empty_cache()
    return torch.cat(out)


def measure_engine(engine, model_path: str, fp32_head: bool, n_prompts: int = 64,
                   prompt_len: int = 64, new_tokens: int = 512, temperature: float = 1.0,
                   seed: int = 0) -> dict:
    """Sample with an existing engine (its head must match ``fp32_head``), score with the
    learner, return :func:`mismatch_stats` plus the settings."""
    from rollout.base import SamplingConfig

    vocab = json.loads(Path(model_path, "config.json").read_text())["vocab_size"]
    prompts = random_prompts(n_prompts, prompt_len, vocab, seed)
    comps = engine.generate(prompts, SamplingConfig(n=1, temperature=temperature,
                                                    max_tokens=new_tokens, repetition_window=0),
                            seeds=list(range(seed, seed + n_prompts)))
    sampler = torch.tensor([x for c in comps for x in c.logprobs if c.token_ids])
    learner = learner_logprobs(model_path, fp32_head, prompts, comps)
    return {"head": "fp32" if fp32_head else "bf16", "temperature": temperature,
            "prompts": n_prompts, "new_tokens": new_tokens, **mismatch_stats(learner, sampler)}


def _measure_head(model_path: str, head: str, args) -> dict:
    from rollout.base import EngineSetup
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine

    options = VLLMEngineConfig(gpu_memory_utilization=args.gpu_memory_utilization,
                               max_model_len=args.prompt_len + args.new_tokens + 16)
    engine = VLLMEngine(model_path, options, EngineSetup(dtype="bfloat16",
                                                         lm_head_fp32=head == "fp32"),
                        skip_tokenizer_init=True)
    return measure_engine(engine, model_path, head == "fp32", args.prompts, args.prompt_len,
                          args.new_tokens, args.temperature, args.seed)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'head (both sides)':>18} {'tokens':>7} {'pearson r':>10} {'mean|dp|':>10} "
             f"{'max|dp|':>9} {'mean|dlogp|':>12} {'mean p':>7}"]
    for r in rows:
        lines.append(f"{r['head']:>18} {r['tokens']:7d} {r['pearson']:10.5f} "
                     f"{r['prob_abs_diff']:10.2e} {r['prob_abs_diff_max']:9.2e} "
                     f"{r['logprob_abs_diff']:12.4f} {r['sampled_prob_mean']:7.3f}")
    return "\n".join(lines)


def run(recipe, heads: tuple[str, ...] = ("bf16", "fp32"), prompts: int = 64,
        prompt_len: int = 64, new_tokens: int = 512, temperature: float | None = None,
        gpu_memory_utilization: float = 0.4, seed: int = 0, out: str | None = None) -> list[dict]:
    """The ``rlhf mismatch`` command: one process per head, then the table."""
    from rlhf.models import prepare_model

    model = prepare_model(recipe.model, tempfile.mkdtemp(prefix="mismatch_model_"))
    temp = recipe.rollout.temperature if temperature is None else temperature
    rows = []
    for head in heads:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, "-m", "rlhf.mismatch", model, head, f.name,
                   f"--prompts={prompts}", f"--prompt-len={prompt_len}",
                   f"--new-tokens={new_tokens}", f"--temperature={temp}",
                   f"--gpu-memory-utilization={gpu_memory_utilization}", f"--seed={seed}"]
            subprocess.run(cmd, check=True)
            rows.append(json.loads(Path(f.name).read_text()))
    print(f"\ntrain/inference mismatch on the sampled tokens, {model} "
          f"({prompts} prompts x {new_tokens} tokens, temperature {temp}):")
    print(format_table(rows))
    if out:
        Path(out).write_text(json.dumps({"model": model, "rows": rows}, indent=2))
    return rows


def command(args) -> int:
    """``rlhf mismatch RECIPE [overrides] [--prompts N] [--new-tokens T] [--out FILE]``."""
    from rlhf.config import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(recipe, prompts=args.prompts, new_tokens=args.new_tokens, out=args.out)
    return 0


def main() -> None:  # one head, in its own process
    ap = argparse.ArgumentParser(description="one head of `rlhf mismatch` (internal)")
    ap.add_argument("model")
    ap.add_argument("head", choices=["bf16", "fp32"])
    ap.add_argument("out")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=512)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    Path(args.out).write_text(json.dumps(_measure_head(args.model, args.head, args)))


if __name__ == "__main__":
    main()
