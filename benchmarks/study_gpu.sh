#!/usr/bin/env bash
# The GPU ablation study (M1 Fig. 2 / Fig. 3 at small scale) on one GPU: two supervised warm-ups
# of different lengths at once, the RL arms start from the one whose held-out pass rate lies
# nearest 0.25 (runs/gpu_ablation_warmup links to it), then the sweep CISPO / DAPO x FP32 head
# on / off (recipes/ablations/gpu/sweep.yaml, 4 runs at once). Run it again to resume: finished
# warm-ups and runs are kept, an interrupted run continues from its last checkpoint.
# Results: benchmarks/results/ablation_gpu/ (results.json/.md, plots, warm-up choice).
# Env: WARMUP_STEPS="500 1500" (the candidates), EXTRA="key=value ..." (overrides for every run,
# e.g. a CPU smoke test), WARMUP_EXTRA (for the warm-ups only), SWEEP_ARGS (extra `rlhf sweep` arguments),
# SWEEP_TIMEOUT=SECONDS (stop the sweep then, report what finished; run again to continue), STUDY_OUT (results dir).
# Usage: bash benchmarks/study_gpu.sh [warmup|sweep|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
RLHF=${RLHF:-"python3 -m rlhf.cli"}
STEPS=${WARMUP_STEPS:-"500 1500"}
RESULTS=${STUDY_OUT:-benchmarks/results/ablation_gpu}
what=${1:-all}
start=$(date +%s)
mkdir -p runs "$RESULTS"
# shellcheck disable=SC2086
if [ "$what" != sweep ]; then
  for n in $STEPS; do
    [ -f "runs/gpu_ablation_warmup_$n/summary.json" ] && continue
    $RLHF train recipes/ablations/gpu/warmup.yaml "warmup.steps=$n" "run.name=gpu_ablation_warmup_$n" \
      ${EXTRA:-} ${WARMUP_EXTRA:-} > "runs/gpu_ablation_warmup_$n.log" 2>&1 &
    sleep 20   # engines do not profile GPU memory at the same moment
  done
  wait
  python3 - "$RESULTS" $STEPS <<'PY'
import json, os, sys
from pathlib import Path
out, steps = Path(sys.argv[1]), sys.argv[2:]
rates = {}
for n in steps:
    run = Path(f"runs/gpu_ablation_warmup_{n}")
    if not (run / "summary.json").exists():
        sys.exit(f"warm-up of {n} steps did not finish: see runs/gpu_ablation_warmup_{n}.log")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates[n] = [r["eval/pass_rate"] for r in rows if r.get("kind") == "eval"][-1]
best = min(rates, key=lambda n: abs(rates[n] - 0.25))
link = Path("runs/gpu_ablation_warmup")
if link.is_symlink() or link.exists():
    link.unlink()
link.symlink_to(f"gpu_ablation_warmup_{best}")
(out / "warmup_choice.json").write_text(json.dumps({"pass_rate_by_warmup_steps": rates, "chosen": best}, indent=2))
print(f"warm-up pass rates {rates}: RL starts from the {best}-step warm-up")
PY
fi
if [ "$what" != warmup ]; then
  if [ -n "${SWEEP_TIMEOUT:-}" ]; then  # a time-limited part: Ctrl-C after it, the runs keep their checkpoints
    # shellcheck disable=SC2086
    timeout -s INT "$SWEEP_TIMEOUT" $RLHF sweep recipes/ablations/gpu/sweep.yaml ${EXTRA:-} ${SWEEP_ARGS:-} || true
    # shellcheck disable=SC2086
    $RLHF sweep recipes/ablations/gpu/sweep.yaml ${EXTRA:-} --report-only
  else
    # shellcheck disable=SC2086
    $RLHF sweep recipes/ablations/gpu/sweep.yaml ${EXTRA:-} ${SWEEP_ARGS:-} || true
    # shellcheck disable=SC2086
    $RLHF sweep recipes/ablations/gpu/sweep.yaml ${EXTRA:-} ${SWEEP_ARGS:-}   # resumes a run that failed to start
  fi
  d=runs/sweeps/gpu_ablation
  cp "$d"/results.json "$d"/results.md "$d"/*.png "$RESULTS/"
fi
mkdir -p "$RESULTS/runs"   # every run's raw per-step metrics, warm-ups included
for m in runs/gpu_ablation_warmup_*/metrics.jsonl runs/sweeps/gpu_ablation/runs/*/metrics.jsonl; do
  if [ -f "$m" ]; then cp "$m" "$RESULTS/runs/$(basename "$(dirname "$m")").metrics.jsonl"; fi
done
echo "study ($what): $(( $(date +%s) - start )) s wall"
