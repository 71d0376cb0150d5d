"""Held-out evaluation: every eval prompt sampled ``rollout.eval_samples`` times (once when
greedy), scored by the run's scorer; the pass rate averages over all samples.

Sampling seeds are fixed by the prompt's index, so two evaluations of one policy draw the
same random numbers: a before -> after difference is paired (the same problems, the same seeds),
and its variance comes from the problems and the ``eval_samples`` draws per problem, which
the paired bootstrap over problems (rlhf/sweep/stats.py) turns into a confidence interval."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rlhf.config import RolloutConfig
from rlhf.driver.scoring import Scorer
from rollout.base import SamplingConfig


def eval_sampling(ro: RolloutConfig) -> SamplingConfig:
    return SamplingConfig(n=ro.eval_samples if ro.eval_temperature > 0 else 1,
                          temperature=ro.eval_temperature, top_p=ro.eval_top_p,
                          top_k=ro.eval_top_k, min_p=ro.eval_min_p, seed=None,
                          max_tokens=ro.max_new_tokens,
                          repetition_window=ro.repetition_stop.window,
                          repetition_prob=ro.repetition_stop.prob)


def evaluate(rollouts: Any, scorer: Scorer, dataset, sampling: SamplingConfig,
             ) -> tuple[dict[str, float], list[float]]:
    """``rollouts`` (a RolloutGroup) answer every row of a tokenized ``dataset``; the metrics
    and each problem's pass rate (over its samples), in dataset order."""
    t0 = time.perf_counter()
    rows = [dict(row) for row in dataset]
    prompts = [row.pop("prompt_ids") for row in rows]
    comps = rollouts.generate(prompts, sampling, list(range(len(prompts))))
    results, _ = scorer.score([c.text for c in comps], [rows[c.prompt_index] for c in comps])
    passed, drawn = [0] * len(rows), [0] * len(rows)
    for c, x in zip(comps, results):
        drawn[c.prompt_index] += 1
        passed[c.prompt_index] += int(bool(x.correct))
    per_problem = [p / max(d, 1) for p, d in zip(passed, drawn)]
    return {"eval/pass_rate": sum(1 for x in results if x.correct) / len(results),
            "eval/reward_mean": sum(x.score for x in results) / len(results),
            "eval/response_len_mean": sum(len(c.token_ids) for c in comps) / len(comps),
            "time/eval": time.perf_counter() - t0}, per_problem


def _rates_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "evals" / f"step_{step:06d}.json"


def save_problem_rates(run_dir: Path, step: int, per_problem: list[float]) -> None:
    """Each held-out problem's pass rate at ``step`` (``evals/step_NNNNNN.json``; a step that is
    evaluated again after a resume overwrites its file)."""
    path = _rates_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "per_problem": per_problem}))


def load_problem_rates(run_dir: Path, step: int) -> list[float] | None:
    path = _rates_path(run_dir, step)
    return json.loads(path.read_text())["per_problem"] if path.exists() else None


def before_after(run_dir: Path, step: int) -> dict[str, Any]:
    """Held-out pass rate before RL (step 0) -> after (``step``) and the 95% interval of the
    difference (paired bootstrap over problems); empty without both evaluations."""
    from rlhf.sweep.stats import paired_bootstrap

    before, after = load_problem_rates(run_dir, 0), load_problem_rates(run_dir, step)
    if before is None or after is None or step == 0 or len(before) != len(after):
        return {}
    diff, lo, hi = paired_bootstrap(before, after)
    return {"eval/pass_rate_before": sum(before) / len(before),
            "eval/pass_rate_after": sum(after) / len(after),
            "eval/gain": diff, "eval/gain_ci95": [lo, hi], "eval/problems": len(before)}


def before_after_line(summary: dict[str, Any]) -> str | None:
    """``held-out pass rate 0.312 -> 0.457 (+0.145, 95% CI +0.101..+0.190, 200 problems)``."""
    if "eval/gain" not in summary:
        return None
    lo, hi = summary["eval/gain_ci95"]
    return (f"held-out pass rate before RL -> after RL: {summary['eval/pass_rate_before']:.3f} -> "
            f"{summary['eval/pass_rate_after']:.3f} ({summary['eval/gain']:+.3f}, 95% CI "
            f"{lo:+.3f}..{hi:+.3f}, paired bootstrap over {summary['eval/problems']} problems)")
