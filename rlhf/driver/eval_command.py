"""``rlhf eval RECIPE [overrides] --checkpoint DIR``: held-out evaluation only.

The recipe's ``data.eval`` prompts are sampled ``rollout.eval_samples`` times each with the eval
sampling of the run (rlhf/driver/evaluation.py: ``eval_temperature``, ``eval_top_p``,
``eval_top_k``, ``eval_min_p``), on the recipe's engine, scored by its verifiers. Reported:
pass@k (the unbiased estimator of Chen et al. 2021, for k = 1, 2, 4, ... up to the samples per
problem) and mean@n (the share of correct samples, M1's "mean over 32 samples"), written as
JSON and printed as a table. ``--m1`` sets M1's evaluation settings: temperature 1.0, top-p
0.95, 32 samples per problem.

``DIR`` is a Hugging Face model directory (``final_model/``, an export: it has config.json),
a step checkpoint (``checkpoints/step_NNNNNN/``) or a run directory (its latest checkpoint). A
step checkpoint is loaded by the learners, as on resume, and its weights pushed to the engines.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rlhf.config import Recipe

M1_EVAL = ["rollout.eval_temperature=1.0", "rollout.eval_top_p=0.95", "rollout.eval_samples=32"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n samples, c of
    them correct, is correct: 1 - C(n - c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def default_ks(n: int) -> list[int]:
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks + ([n] if ks[-1] != n else [])


def summarize(correct: list[list[bool]], ks: list[int]) -> dict[str, Any]:
    """``correct[i]``: problem i's samples, correct or not (every problem with n samples)."""
    n = len(correct[0])
    counts = [sum(c) for c in correct]
    return {"problems": len(correct), "samples_per_problem": n,
            **{f"pass@{k}": sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks},
            f"mean@{n}": sum(counts) / (n * len(counts)), "correct_per_problem": counts}


def resolve_checkpoint(path: Path) -> tuple[str, Path]:
    """("hf", model dir) or ("step", step checkpoint dir)."""
    from rlhf.driver.checkpoint import Checkpoints, run_checkpoints

    if (path / "config.json").exists():
        return "hf", path
    if (path / "driver.json").exists():
        return "step", path
    if run_checkpoints(path).is_dir():
        latest = Checkpoints(run_checkpoints(path), keep=1).latest()
        if latest is not None:
            return "step", latest
    raise ValueError(f"--checkpoint {str(path)!r} is neither a Hugging Face model directory "
                     "(config.json), a step checkpoint (driver.json) nor a run directory with "
                     "a complete checkpoint under its checkpoint directory")


def run_eval(recipe: Recipe, checkpoint: Path, address: str | None = None,
             ks: list[int] | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data.eval``; the report (also what the JSON holds)."""
    from transformers import AutoTokenizer

    from rlhf.driver.checkpoint import Checkpoints
    from rlhf.driver.data import load_prompts
    from rlhf.driver.evaluation import eval_sampling
    from rlhf.driver.placement import start_ray, start_roles
    from rlhf.driver.scoring import Scorer, unjudged
    from rlhf.models import prepare_model

    r = recipe
    if r.data.eval is None:
        raise ValueError("rlhf eval needs held-out prompts: set data.eval")
    kind, ckpt = resolve_checkpoint(checkpoint)
    run_dir = Path(r.run.output_dir) / r.run.name
    model_path = str(ckpt.resolve()) if kind == "hf" else prepare_model(r.model, run_dir / "init_model")
    sampling = eval_sampling(r.rollout)
    ks = ks or default_ks(sampling.n)
    if max(ks) > sampling.n:
        raise ValueError(f"pass@{max(ks)} needs rollout.eval_samples >= {max(ks)} (and "
                         f"rollout.eval_temperature > 0); sampling gives {sampling.n} per problem")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    ds = load_prompts(r.data, "eval", tokenizer)
    rows = [dict(row) for row in ds]
    prompts = [row.pop("prompt_ids") for row in rows]
    scorer = Scorer(r.rewards)
    start_ray(r.train, r.rollout, address)
    learners = rollouts = None
    try:
        context_len = max(len(p) for p in prompts) + r.rollout.max_new_tokens
        if kind == "hf":
            from rlhf.driver.roles import RolloutGroup
            from rollout.base import EngineSetup

            setup = EngineSetup(dtype=r.model.dtype, lm_head_fp32=r.precision.lm_head_fp32,
                                seed=r.run.seed, context_len=context_len)
            rollouts = RolloutGroup(r.rollout.num_workers, r.rollout.engine, model_path, setup,
                                    r.rollout.num_cpus, 0, r.rollout.max_restarts)
        else:
            learners, sync, rollouts = start_roles(r, model_path, context_len)
            learners.load(str(ckpt))
            sync.push(Checkpoints.driver_state(ckpt)["version"])
        comps = rollouts.generate(prompts, sampling, list(range(len(prompts))))
    finally:
        for role in (rollouts, learners):
            if role is not None:
                role.shutdown()
        import ray

        ray.shutdown()
    results, _ = scorer.score([c.text for c in comps], [rows[c.prompt_index] for c in comps])
    correct: list[list[bool]] = [[] for _ in prompts]
    for c, res in zip(comps, results):
        correct[c.prompt_index].append(bool(res.correct))
    return {"checkpoint": str(ckpt), "engine": r.rollout.engine.type,
            "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                         "top_k": sampling.top_k, "min_p": sampling.min_p,
                         "max_tokens": sampling.max_tokens},
            **summarize(correct, ks),
            "reward_mean": sum(x.score for x in results) / len(results),
            "response_len_mean": sum(len(c.token_ids) for c in comps) / len(comps),
            "unjudged": sum(1 for x in results if unjudged(x))}


def table(report: dict[str, Any]) -> str:
    s = report["sampling"]
    head = (f"{report['checkpoint']}: {report['problems']} problems x "
            f"{report['samples_per_problem']} samples ({report['engine']} engine, temperature "
            f"{s['temperature']}, top-p {s['top_p']}, top-k {s['top_k']}, min-p {s['min_p']})")
    keys = [k for k in report if k.startswith(("pass@", "mean@"))] + \
        ["reward_mean", "response_len_mean", "unjudged"]
    width = max(map(len, keys))
    return "\n".join([head, *(f"  {k:<{width}}  {report[k]:.4f}" if isinstance(report[k], float)
                              else f"  {k:<{width}}  {report[k]}" for k in keys)])


def command(args: argparse.Namespace, recipe: Recipe) -> int:
    ks = [int(k) for k in args.k.split(",")] if args.k else None
    try:
        report = run_eval(recipe, Path(args.checkpoint), args.address, ks)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(recipe.run.output_dir) / recipe.run.name / "eval"
                                           / f"{Path(report['checkpoint']).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {out}")
    return 0


def add_parser(sub: Any, load: Any) -> None:
    """``rlhf eval``; ``load(args)`` reads and checks the recipe as the other commands do."""
    ev = sub.add_parser("eval", help="held-out evaluation of a checkpoint: pass@k and mean@k")
    ev.add_argument("recipe")
    ev.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rollout.eval_samples=8")
    ev.add_argument("--checkpoint", required=True,
                    help="a Hugging Face model directory, a step checkpoint or a run directory")
    ev.add_argument("--m1", action="store_true",
                    help="M1's settings: temperature 1.0, top-p 0.95, 32 samples per problem "
                         "(overrides given after the recipe still win)")
    ev.add_argument("--k", default=None, help="pass@k for these k, e.g. 1,8,32 (default: powers "
                                              "of 2 up to the samples per problem)")
    ev.add_argument("--out", default=None, help="JSON report (default: RUN_DIR/eval/NAME.json)")
    ev.add_argument("--address", default=None, help="existing Ray cluster")

    def run(args: argparse.Namespace) -> int:
        from rlhf.cli import local_ray_auth

        local_ray_auth(args.address)
        if args.m1:
            args.overrides = M1_EVAL + list(args.overrides)
        return command(args, load(args))

    ev.set_defaults(fn=run)
