#!/usr/bin/env bash
# The ablation study (M1 Fig. 2 at toy scale) on CPU: the shared warm-up once, then the
# loss sweep (CISPO / DAPO / GRPO x 3 seeds, K = 16) and, with --k, the K sweep (CISPO, K = 1/4/16).
# Both sweeps resume when run again. Results are copied to benchmarks/results/ablation_<sweep>/.
# Usage: bash benchmarks/study_ablations.sh [--k]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
RLHF=.venv/bin/rlhf
start=$(date +%s)
[ -f runs/ablation_warmup/summary.json ] || $RLHF train recipes/ablations/warmup.yaml
sweeps=(sweep_losses)
[ "${1:-}" = "--k" ] && sweeps+=(sweep_k)
for s in "${sweeps[@]}"; do
  $RLHF sweep "recipes/ablations/$s.yaml"
done
for d in runs/sweeps/ablation_losses runs/sweeps/ablation_k; do
  [ -f "$d/results.json" ] || continue
  out="benchmarks/results/$(basename "$d")"
  mkdir -p "$out" && cp "$d"/results.json "$d"/results.md "$d"/*.png "$out/"
done
echo "study: $(( ($(date +%s) - start) / 60 )) min wall on $(nproc) cores"
