"""Benchmark the math verifier against math-verify on labelled answer-equivalence cases.

Measures, in one process on one machine, in one run:
1. agreement with the labels of ``benchmarks/data/math_equiv_cases.jsonl`` (gathered from the
   test suites of Math-Verify, lighteval, NeMo-Skills, verl and AReaL; ``source`` per case),
   for ours (``get_verifier("math", extract="lenient")``) and for math-verify
   (``verify(parse(gold), parse(pred))`` with its default extraction);
2. throughput on the same cases; both have warmed their parsers on ``WARM_PAIRS`` only (never on
   the cases), and the worker pool is started before timing:
   - "first-time": each labelled pair checked once; our verdict caches emptied and the workers
     replaced by fresh ones (forked from the warm forkserver) first; math-verify one sequential pass (its timeouts use SIGALRM, so no threads);
     ours sequentially and with ``batch`` (threads + worker processes, ``M1RL_MATH_WORKERS``);
   - "repeated": each case scored as a GRPO group of G samples (the labelled prediction
     repeated G times, as when samples agree), our caches on; math-verify one pass over the same
     G-fold list;
3. adversarial inputs (power towers, giant factorials, deep nesting, 100k-character answers,
   code-looking text): wall time of each call, and that nothing was executed.
The machine is shared: the load average is recorded at the start and the end, and only ratios
measured in this run are comparable.

Run:  .venv/bin/python benchmarks/bench_math_verifier.py [--group 8] [--out benchmarks/results/math_verifier.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards import get_verifier  # noqa: E402
from rewards.math import clear_cache  # noqa: E402
from rewards.math._worker import WARM_PAIRS  # noqa: E402
from rewards.math.pool import default_pool  # noqa: E402

CASES = ROOT / "benchmarks" / "data" / "math_equiv_cases.jsonl"
PWNED = Path(tempfile.gettempdir()) / "m1rl_bench_pwned"
IN_PROCESS_REASONS = {"exact", "numeric", "numeric_mismatch", "fast_symbolic", "fast_not_equivalent",
                      "choice", "no_answer", "answer_too_long", "pred_unbalanced", "code_shaped",
                      "non_ascii_digits"}


def adversarial_cases() -> list[tuple[str, str, str]]:
    """(name, response, gold)."""
    inj = f"__import__('os').system('touch {PWNED}')"
    return [
        ("power tower", r"\boxed{9^{9^{9^{9^{9}}}}}", "1"),
        ("power tower vs tower", r"\boxed{10^{10^{10^{10}}}}", r"10^{10^{10^{10}}}+1"),
        ("giant factorial", r"\boxed{(10^{9})!}", "1"),
        ("factorial tower", r"\boxed{((100!)!)!}", "2"),
        ("huge integer", r"\boxed{" + "9" * 100_000 + "}", "1"),
        ("huge exponent sci", r"\boxed{1e999999999}", "1"),
        ("100k-char sum", r"\boxed{" + "1+" * 50_000 + "1}", "50001"),
        ("100k-char symbolic", r"\boxed{" + "x*" * 50_000 + "x}", "x^{50001}"),
        ("deep parens", r"\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", "1"),
        ("deep fracs", r"\boxed{" + r"\frac{1}{" * 500 + "2" + "}" * 500 + "}", "1"),
        ("unbalanced braces", r"\boxed{" * 20_000, "1"),
        ("100k response no box", "the answer is " + "x + " * 25_000, "1"),
        ("big expansion", r"\boxed{(x+y+z+1)^{400}}", r"(1+x+y+z)^{400}+1"),
        ("integral", r"\boxed{\int_0^{\infty} e^{-x^{100}} \sin(x^{7}) dx}", "0"),
        ("huge sum", r"\boxed{\sum_{k=1}^{10^{12}} k^{k}}", "1"),
        ("code injection", r"\boxed{" + inj + "}", "0"),
        ("code injection lenient", "Final answer: " + inj, "0"),
        ("dunder text", r"\boxed{\text{__class__.__mro__}}", "1"),
        ("matrix power", r"\boxed{\begin{pmatrix}1&1\\1&0\end{pmatrix}^{10^{9}}}", "1"),
    ]


def run_mathverify(cases):
    from math_verify import parse, verify

    out = []
    for c in cases:
        try:
            out.append(bool(verify(parse(c["gold"]), parse(c["pred"]))))
        except Exception:
            out.append(False)
    return out


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", type=int, default=8, help="G for the repeated (RL-shaped) pass")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "math_verifier.json"))
    args = ap.parse_args()
    load_start = os.getloadavg()

    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    responses = [c["pred"] for c in cases]
    tasks = [{"answer": c["gold"]} for c in cases]
    ours = get_verifier("math", extract="lenient")
    ours_seq = get_verifier("math", extract="lenient", max_workers=1)
    pool = default_pool()

    # -- warm-up (untimed): parsers warm on WARM_PAIRS only, worker processes started -------
    from math_verify import parse, verify

    for g, p in WARM_PAIRS:
        verify(parse(f"${g}$"), parse(f"${p}$"))
    ours.batch([f"\\boxed{{{p}}}" for _, p in WARM_PAIRS], [{"answer": g} for g, _ in WARM_PAIRS])

    def cold() -> None:  # no verdict cache, fresh workers (no sympy caches from earlier passes)
        clear_cache()
        pool.recycle()

    # -- first-time: each pair checked once --------------------------------------------------
    mv, t_mv = _timed(lambda: run_mathverify(cases))
    cold()
    res_seq, t_ours_seq = _timed(lambda: [ours_seq(r, k) for r, k in zip(responses, tasks, strict=True)])
    cold()
    res, t_ours = _timed(lambda: ours.batch(responses, tasks))

    # -- repeated: G samples per prompt ------------------------------------------------------
    G = args.group
    rl_resp = [r for r in responses for _ in range(G)]
    rl_tasks = [k for k in tasks for _ in range(G)]
    _, t_mv_rl = _timed(lambda: run_mathverify([c for c in cases for _ in range(G)]))
    cold()
    _, t_ours_rl = _timed(lambda: ours.batch(rl_resp, rl_tasks))

    labels = [c["label"] for c in cases]
    ours_ok = [bool(r.correct) == lab for r, lab in zip(res, labels, strict=True)]
    seq_ok = [bool(r.correct) == lab for r, lab in zip(res_seq, labels, strict=True)]
    mv_ok = [m == lab for m, lab in zip(mv, labels, strict=True)]
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for c, o, m in zip(cases, ours_ok, mv_ok, strict=True):
        key = c["source"].split(":")[0]
        by_source[key][0] += 1
        by_source[key][1] += o
        by_source[key][2] += m
    disagreements = [
        {"id": c["id"], "label": c["label"], "ours": bool(r.correct), "math_verify": m,
         "reason": r.info.get("reason"), "source": c["source"]}
        for c, r, m, o in zip(cases, res, mv, ours_ok, strict=True) if not o
    ]
    paths = Counter(r.info.get("reason", "?") for r in res)
    in_process = sum(v for k, v in paths.items() if k in IN_PROCESS_REASONS)

    # -- adversarial ------------------------------------------------------------------------
    if PWNED.exists():
        PWNED.unlink()
    adv = []
    for mode in ("boxed", "lenient"):
        v = get_verifier("math", extract=mode)
        for name, resp, gold in adversarial_cases():
            clear_cache()
            t = time.perf_counter()
            r = v(resp, {"answer": gold})
            dt = time.perf_counter() - t
            adv.append({"name": name, "extract": mode, "seconds": round(dt, 3), "score": r.score,
                        "reason": r.info.get("reason") or r.info.get("error")})
    executed = PWNED.exists()
    load_end = os.getloadavg()

    n = len(cases)
    result = {
        "cases": n,
        "agreement": {"ours": sum(ours_ok) / n, "ours_sequential": sum(seq_ok) / n,
                      "math_verify": sum(mv_ok) / n},
        "agreement_by_source": {k: {"n": v[0], "ours": v[1] / v[0], "math_verify": v[2] / v[0]}
                                for k, v in sorted(by_source.items())},
        "throughput_cases_per_s": {
            "math_verify": n / t_mv,
            "ours_sequential": n / t_ours_seq,
            "ours_batch": n / t_ours,
            "math_verify_repeated": len(rl_resp) / t_mv_rl,
            "ours_batch_repeated": len(rl_resp) / t_ours_rl,
        },
        "speedup": {"first_time_sequential": t_mv / t_ours_seq, "first_time_batch": t_mv / t_ours,
                    "repeated": t_mv_rl / t_ours_rl},
        "seconds": {"math_verify": t_mv, "ours_sequential": t_ours_seq, "ours_batch": t_ours,
                    "math_verify_repeated": t_mv_rl, "ours_batch_repeated": t_ours_rl},
        "decided_by": dict(paths.most_common()),
        "decided_in_process": in_process / n,
        "group_size": G,
        "workers": pool.size,
        "worker_restarts": pool.restarts,
        "cpus": os.cpu_count(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load_end]},
        "adversarial": {"max_seconds": max(a["seconds"] for a in adv), "any_scored": any(a["score"] for a in adv),
                        "code_executed": executed, "calls": adv},
        "disagreements": disagreements,
    }

    sp = result["speedup"]
    tp = result["throughput_cases_per_s"]
    print(f"\n{'':30}{'ours':>10}{'math-verify':>14}")
    print(f"{'agreement (' + str(n) + ' cases)':30}{result['agreement']['ours']:>10.1%}{result['agreement']['math_verify']:>14.1%}")
    for k, v in result["agreement_by_source"].items():
        print(f"  {k[:28]:28}{v['ours']:>10.1%}{v['math_verify']:>14.1%}   n={v['n']}")
    print(f"{'cases/s first-time, sequential':30}{tp['ours_sequential']:>10.1f}{tp['math_verify']:>14.1f}   x{sp['first_time_sequential']:.1f}")
    print(f"{'cases/s first-time, batch':30}{tp['ours_batch']:>10.1f}{tp['math_verify']:>14.1f}   x{sp['first_time_batch']:.1f}")
    print(f"{'cases/s repeated, G=' + str(G):30}{tp['ours_batch_repeated']:>10.1f}{tp['math_verify_repeated']:>14.1f}   x{sp['repeated']:.1f}")
    print(f"{'decided in-process':30}{result['decided_in_process']:>10.1%}   {dict(paths.most_common())}")
    print(f"{'adversarial max s/call':30}{result['adversarial']['max_seconds']:>10.2f}"
          f"   (code executed: {executed}, any credited: {result['adversarial']['any_scored']})")
    for a in sorted(adv, key=lambda a: -a["seconds"])[:5]:
        print(f"    {a['seconds']:6.2f}s  {a['extract']:8} {a['name']}: {a['reason']}")
    print(f"load average start {load_start[0]:.2f}, end {load_end[0]:.2f} on {os.cpu_count()} cpus; "
          f"{pool.size} workers, {pool.restarts} worker restarts")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
