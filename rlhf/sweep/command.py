"""``rlhf sweep SWEEP.yaml``: validate every run, run the unfinished ones, write the report."""

from __future__ import annotations

import sys

from rlhf.config import RecipeError
from rlhf.sweep.report import build_results, write_report
from rlhf.sweep.runner import run_all
from rlhf.sweep.spec import build_recipes, expand, load_spec, reference_arm, sweep_dir


def cmd_sweep(args) -> int:
    try:
        spec = load_spec(args.sweep)
        recipes = build_recipes(spec, args.sweep, args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = sweep_dir(spec)
    runs = expand(spec)
    if args.dry_run:
        for r in runs:
            print(f"{r.name}: {' '.join(r.overrides)}")
        print(f"{len(runs)} runs valid; nothing ran (--dry-run)")
        return 0
    failed = []
    if not args.report_only:
        states = run_all(recipes, root, parallel=args.parallel or spec.parallel, address=args.address,
                         stagger_s=spec.stagger_s, retries=spec.retries)
        failed = [s for s in states if s.status == "failed"]
    results = build_results(runs, root / "runs", reference_arm(spec), spec.threshold,
                            {n: r.run.steps for n, r in recipes.items()})
    paths = write_report(results, root, f"Sweep {spec.name}")
    print(f"sweep {spec.name}: report in {', '.join(map(str, paths))}")
    for s in failed:
        print(f"error: run {s.name} failed (exit {s.returncode}); log: {s.log}. Run the sweep "
              "again to retry it (finished runs are kept).", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub) -> None:
    sp = sub.add_parser("sweep", help="run a grid of recipes (axes x seeds) and report mean, CI, plots")
    sp.add_argument("sweep", help="sweep YAML: base recipe, overrides, axes")
    sp.add_argument("overrides", nargs="*", help="dotted overrides for every run, e.g. model.path=DIR")
    sp.add_argument("--dry-run", action="store_true", help="validate every run and list them")
    sp.add_argument("--report-only", action="store_true", help="only rebuild the report from the runs")
    sp.add_argument("--parallel", type=int, default=None, help="runs at once (default: the file's)")
    sp.add_argument("--address", default=None, help="existing Ray cluster for every run")
    sp.set_defaults(fn=cmd_sweep)
