#!/usr/bin/env bash
# The quickstart under several settings at once, each pinned to its own 2 cores (taskset), so a
# many-core machine measures what a 2-core machine would: wall time and the held-out pass rate
# before -> after RL with its paired-bootstrap 95% CI (summary.json). Prints a table; writes
# OUT/quickstart_variants.json. CPU only (CUDA hidden). Needs nproc >= 2 x the number of variants.
# VARIANT_TIMEOUT=SECONDS stops a variant that runs longer (default: none).
# Usage: bash benchmarks/quickstart_variants.sh OUT "name:override override ..." ...
#   e.g. bash benchmarks/quickstart_variants.sh /tmp/qv "base:" "k16:train.mini_batches=16"
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "$1"); shift
mkdir -p "$OUT"
RLHF=${RLHF:-"python3 -m rlhf.cli"}
i=0
CORE_OFFSET=${CORE_OFFSET:-0}   # first core to pin to (leave the others to another job)
for v in "$@"; do
  name=${v%%:*}; overrides=${v#*:}
  cores="$((CORE_OFFSET + 2 * i)),$((CORE_OFFSET + 2 * i + 1))"
  mkdir -p "$OUT/$name"
  ( start=$(date +%s)
    # shellcheck disable=SC2086
    CUDA_VISIBLE_DEVICES="" timeout "${VARIANT_TIMEOUT:-0}" taskset -c "$cores" $RLHF train recipes/quickstart.yaml run.output_dir="$OUT/$name" \
      run.name=quickstart logging.tensorboard=false run.plot=false $overrides \
      > "$OUT/$name/log.txt" 2>&1 || echo "exit $?" >> "$OUT/$name/log.txt"
    echo $(( $(date +%s) - start )) > "$OUT/$name/wall_s" ) &
  i=$((i + 1))
done
wait
python3 - "$OUT" "$@" <<'EOF'
import json, pathlib, sys
out, rows = pathlib.Path(sys.argv[1]), []
for v in sys.argv[2:]:
    name, overrides = v.split(":", 1)
    d = out / name
    s = json.loads((d / "quickstart" / "summary.json").read_text()) if (d / "quickstart" / "summary.json").exists() else {}
    rows.append({"variant": name, "overrides": overrides, "wall_s": float((d / "wall_s").read_text()),
                 **{k: s.get(k) for k in ("eval/pass_rate_before", "eval/pass_rate_after", "eval/gain", "eval/gain_ci95")}})
print(f"{'variant':10} {'wall s':>7} {'before':>7} {'after':>7} {'gain':>7}  95% CI         overrides")
for r in rows:
    ci = r["eval/gain_ci95"] or [float("nan")] * 2
    f = lambda x: f"{x:7.3f}" if isinstance(x, float) else f"{'-':>7}"
    print(f"{r['variant']:10} {r['wall_s']:7.0f} {f(r['eval/pass_rate_before'])} {f(r['eval/pass_rate_after'])} "
          f"{f(r['eval/gain'])}  {ci[0]:+.3f}..{ci[1]:+.3f}  {r['overrides']}")
(out / "quickstart_variants.json").write_text(json.dumps(rows, indent=2))
EOF
