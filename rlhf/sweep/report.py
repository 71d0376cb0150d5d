"""A sweep's results from its runs' files: ``results.json``, ``results.md``, ``pass_rate.png``
(held-out pass rate vs step per arm, with its 95% band over seeds) and ``train_curves.png``
(entropy, response length, clip fraction, mismatch vs step). Statistics: rlhf/sweep/stats.py."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rlhf.driver.evaluation import load_problem_rates
from rlhf.driver.metrics import read_metrics
from rlhf.sweep.spec import RunSpec
from rlhf.sweep.stats import bootstrap_ci, mean_ci, steps_to_threshold

TRAIN_CURVES = (("reward/mean", "train reward"), ("entropy", "entropy (nats/token)"),
                ("response_len/mean", "response length"), ("clip_frac", "clipped token fraction"),
                ("mismatch/pearson", "train/infer Pearson r"), ("window/current", "length window (tokens)"))


def run_curves(run_dir: Path) -> dict[str, Any]:
    """A run's held-out pass rate per eval step and its train metrics per step."""
    rows = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    evals = {r["step"]: r["eval/pass_rate"] for r in rows if r.get("kind") == "eval"}
    train: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r.get("kind") != "train":
            continue
        for key, _ in TRAIN_CURVES:
            value = (r.get("clip_frac_upper", 0.0) + r.get("clip_frac_lower", 0.0)
                     if key == "clip_frac" and "clip_frac_upper" in r else r.get(key))
            if value is not None:
                train[key][r["step"]] = float(value)
    return {"eval": dict(sorted(evals.items())), "train": dict(train)}


def summarize_arm(run_dirs: list[Path]) -> dict[str, Any]:
    """Mean and 95% interval over seeds at every step every seed evaluated; the final pass rate
    with both intervals (seeds: t; problems: bootstrap of per-problem rates averaged over seeds)."""
    curves = [run_curves(d) for d in run_dirs]
    common = sorted(set.intersection(*(set(c["eval"]) for c in curves))) if curves else []
    per_step = []
    for s in common:
        m, lo, hi = mean_ci([c["eval"][s] for c in curves])
        per_step.append({"step": s, "mean": m, "low": lo, "high": hi,
                         "seeds": [c["eval"][s] for c in curves]})
    out: dict[str, Any] = {"seeds": len(run_dirs), "pass_rate": per_step}
    if per_step:
        last = common[-1]
        out["final"] = {k: per_step[-1][k] for k in ("step", "mean", "low", "high")}
        rates = [load_problem_rates(d, last) for d in run_dirs]
        if all(r is not None for r in rates) and len({len(r) for r in rates if r}) == 1:
            per_problem = np.mean(np.asarray(rates, dtype=float), axis=0)
            _, blo, bhi = bootstrap_ci(per_problem)
            out["final"]["problems_low"], out["final"]["problems_high"] = blo, bhi
            out["final"]["problems"] = int(per_problem.size)
    out["train"] = {key: _mean_curve([c["train"].get(key, {}) for c in curves])
                    for key, _ in TRAIN_CURVES}
    return out


def _mean_curve(curves: list[dict[int, float]]) -> list[list[float]]:
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves and all(curves) else []
    return [[s, float(np.mean([c[s] for c in curves]))] for s in steps]


def build_results(runs: list[RunSpec], run_root: Path, reference: str | None,
                  threshold: float | None, steps: dict[str, int] | None = None) -> dict[str, Any]:
    """``steps`` (run name -> run.steps): a run without ``summary.json`` whose held-out eval at
    that step is in its metrics counts too (it was stopped after its last eval, e.g. during the
    final export); without it only runs with a summary count."""
    arms: dict[str, list[Path]] = defaultdict(list)
    for r in runs:
        if _complete(run_root / r.name, (steps or {}).get(r.name)):
            arms[r.arm].append(run_root / r.name)
    results: dict[str, Any] = {"arms": {a: summarize_arm(d) for a, d in arms.items()},
                               "reference": reference}
    if threshold is None and reference in results["arms"] and "final" in results["arms"][reference]:
        threshold = results["arms"][reference]["final"]["mean"]
    results["threshold"] = threshold
    if threshold is not None:
        for a in results["arms"].values():
            pts = a["pass_rate"]
            a["steps_to_threshold"] = steps_to_threshold([p["step"] for p in pts],
                                                         [p["mean"] for p in pts], threshold)
        ref = results["arms"].get(reference, {}).get("steps_to_threshold")
        for a in results["arms"].values():
            s = a.get("steps_to_threshold")
            a["steps_ratio_to_reference"] = s / ref if s is not None and ref else None
    results["incomplete_runs"] = [r.name for r in runs
                                  if not _complete(run_root / r.name, (steps or {}).get(r.name))]
    return results


def _complete(run_dir: Path, steps: int | None) -> bool:
    if (run_dir / "summary.json").exists():
        return True
    return steps is not None and steps in run_curves(run_dir)["eval"]


def write_report(results: dict[str, Any], out: Path, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results, title))
    return [out / "results.json", out / "results.md", *plot(results, out)]


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(results: dict[str, Any], title: str) -> str:
    th = results.get("threshold")
    lines = [f"# {title}", "",
             f"Held-out pass rate, mean over seeds with 95% intervals: over seeds (Student t) and over "
             f"problems (bootstrap). Threshold for steps-to-threshold: "
             f"{_fmt(th)} ({'final mean of ' + results['reference'] if results.get('reference') else 'given'}).",
             "", "| arm | seeds | final step | final pass rate | 95% CI (seeds) | 95% CI (problems) "
             "| steps to threshold | ratio to reference |", "|---|---|---|---|---|---|---|---|"]
    for name, a in results["arms"].items():
        f = a.get("final", {})
        lines.append(f"| {name} | {a['seeds']} | {f.get('step', '-')} | {_fmt(f.get('mean'))} | "
                     f"{_fmt(f.get('low'))}..{_fmt(f.get('high'))} | "
                     f"{_fmt(f.get('problems_low'))}..{_fmt(f.get('problems_high'))} | "
                     f"{_fmt(a.get('steps_to_threshold'), '.1f')} | "
                     f"{_fmt(a.get('steps_ratio_to_reference'), '.2f')} |")
    lines += ["", "Pass rate at every eval step (mean [low, high]):", ""]
    for name, a in results["arms"].items():
        pts = ", ".join(f"{p['step']}: {p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"
                        for p in a["pass_rate"])
        lines.append(f"- **{name}**: {pts}")
    lines += ["", "Train metrics, mean over seeds: first step -> last step (mean over all steps):", "",
              "| arm | " + " | ".join(k for k, _ in TRAIN_CURVES) + " |",
              "|---|" + "---|" * len(TRAIN_CURVES)]
    for name, a in results["arms"].items():
        cells = []
        for key, _ in TRAIN_CURVES:
            curve = a["train"].get(key) or []
            cells.append(f"{curve[0][1]:.5g} -> {curve[-1][1]:.5g} "
                         f"({np.mean([p[1] for p in curve]):.5g})" if curve else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results.get("incomplete_runs"):
        lines += ["", f"Runs not finished (left out): {', '.join(results['incomplete_runs'])}"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, a in results["arms"].items():
        pts = a["pass_rate"]
        if not pts:
            continue
        steps = [p["step"] for p in pts]
        ax.plot(steps, [p["mean"] for p in pts], "o-", label=f"{name} (n={a['seeds']})")
        ax.fill_between(steps, [p["low"] for p in pts], [p["high"] for p in pts], alpha=0.2)
    if results.get("threshold") is not None:
        ax.axhline(results["threshold"], color="grey", ls="--", lw=1, label="threshold")
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out pass rate")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pass_rate.png", dpi=100)
    plt.close(fig)
    curves = [(k, y) for k, y in TRAIN_CURVES if any(a["train"].get(k) for a in results["arms"].values())]
    fig, axes = plt.subplots(1, max(len(curves), 1), figsize=(3.2 * max(len(curves), 1) + 1, 3.6),
                             squeeze=False)
    axes = axes[0]
    for ax, (key, ylabel) in zip(axes, curves):
        for name, a in results["arms"].items():
            pts = a["train"].get(key) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
    axes[0].legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "train_curves.png", dpi=90)
    plt.close(fig)
    return [out / "pass_rate.png", out / "train_curves.png"]
