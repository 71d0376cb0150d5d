"""Synchronous vs one-step-off rounds on CPU (train.async_mode off | one_step).

The same tiny recipe (recipes/quickstart.yaml's task, a 2-layer model, the transformers engine,
learner and engine as separate Ray actors of one CPU each: placement ``local``, which on CPU is
the separate placement) run twice, once per mode, with the dense ``digit_count`` reward of the
tests so that a few steps show learning. Prints one row per mode: the mean round (``time/step``,
first round left out: it has nothing to overlap), the time the loop waited for generation
(``time/generate``), training (``time/train_total``), and the reward at the start and the end
(mean of the first and last three steps); writes the table and the per-step rows to
benchmarks/results/async_cpu.json with the machine it ran on.

On a CPU box the overlap can only win where there are free cores for both actors; the GPU
target (2 x H200, 0.5B shape) is benchmarks/gpu_proof.py's business.

    python benchmarks/bench_async.py [--steps 12] [--prompts 8] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(mode: str, out: Path, args) -> list[dict]:
    from rlhf.config import load_recipe
    from rlhf.driver import train

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        f"run.output_dir={out}", f"run.name=bench_{mode}", f"run.steps={args.steps}", "run.eval_every=0",
        "run.save_every=0", "run.plot=false", "warmup.steps=0", "data.train.size=512",
        "data.eval=null", f"data.prompts_per_step={args.prompts}", "rollout.samples_per_prompt=4",
        f"rollout.max_new_tokens={args.tokens}", "train.mini_batches=2",
        "model.build.hidden_size=64", "model.build.num_layers=2", "logging.tensorboard=false",
        "train.optim.lr=1e-3", "rewards.verifiers=[{name: 'tests.plugins:digit_count'}]",
        f"train.async_mode={mode}"])
    train(recipe)
    rows = [json.loads(x) for x in (out / f"bench_{mode}" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def summarize(rows: list[dict]) -> dict:
    later = rows[1:]
    mean = lambda key, rs: statistics.mean(r.get(key, 0.0) for r in rs)  # noqa: E731
    return {"round_s": mean("time/step", later), "generate_wait_s": mean("time/generate", later),
            "train_s": mean("time/train_total", later),
            "reward_first3": mean("reward/mean", rows[:3]), "reward_last3": mean("reward/mean", rows[-3:]),
            "staleness": mean("train/staleness", later)}


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1m_at_start": os.getloadavg()[0], "python": platform.python_version()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--tokens", type=int, default=32)
    args = p.parse_args()
    host = machine()
    results, per_step = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("off", "one_step"):
            t0 = time.perf_counter()
            rows = run(mode, Path(tmp), args)
            results[mode] = {**summarize(rows), "wall_s": time.perf_counter() - t0}
            per_step[mode] = [{k: r.get(k) for k in ("step", "time/step", "time/generate",
                                                      "time/train_total", "reward/mean",
                                                      "train/staleness")} for r in rows]
    ratio = results["one_step"]["round_s"] / results["off"]["round_s"]
    print(f"\nmachine: {host}")
    print(f"{'mode':10} {'round s':>8} {'gen wait s':>10} {'train s':>8} {'reward first3':>13} "
          f"{'reward last3':>12} {'staleness':>9}")
    for mode, r in results.items():
        print(f"{mode:10} {r['round_s']:8.3f} {r['generate_wait_s']:10.3f} {r['train_s']:8.3f} "
              f"{r['reward_first3']:13.4f} {r['reward_last3']:12.4f} {r['staleness']:9.2f}")
    print(f"one_step round / sync round: {ratio:.2f}x")
    out = ROOT / "benchmarks" / "results" / "async_cpu.json"
    out.write_text(json.dumps({"machine": host, "args": vars(args), "results": results,
                               "round_ratio": ratio, "per_step": per_step}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
