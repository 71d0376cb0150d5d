"""Math worker pool and backend: pinned libraries, hardening through the libraries' own entry
points, soft and hard deadlines, no cached non-verdicts, unjudged results when the backend is
missing, preflight, and close() leaving no worker behind."""

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomllib

from rewards import get_verifier, is_unjudged
from rewards.base import VerifierUnavailable
from rewards.math import MathVerifier, _worker, clear_cache, math_equal
from rewards.math import pool as pool_mod
from rewards.math.pool import WorkerPool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SYMBOLIC = "\\log_2 8"  # the fast parser declines \log: only a worker decides it


class ScriptedPool:
    """Stands in for a WorkerPool: answers from a list, records what it was asked."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def compare(self, gold, pred, timeout):
        self.calls.append((gold, pred))
        return self.answers.pop(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- pinned backend and hardening -----------------------------------------------------------

def test_installed_backend_versions_equal_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(d.split("==") for d in project["dependencies"] if "==" in d)
    assert {k: pins[k] for k in ("math-verify", "latex2sympy2_extended")} == _worker.PINNED
    assert not any(d.startswith("math-verify") for d in project["optional-dependencies"]["dev"])
    for dist, version in _worker.PINNED.items():
        assert importlib.metadata.version(dist) == version
    assert _worker.backend_problems() == []


def test_version_mismatch_and_missing_library_are_reported(monkeypatch):
    real = importlib.metadata.version

    def fake(dist):
        if dist == "math-verify":
            raise importlib.metadata.PackageNotFoundError(dist)
        return "0.0.1" if dist == "latex2sympy2_extended" else real(dist)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    assert _worker.backend_problems() == [
        "math-verify is not installed (pip install 'math-verify==0.9.0')",
        "latex2sympy2_extended 0.0.1 is installed but 1.11.0 is pinned: the worker's hardening "
        "patches its internals and is checked for 1.11.0 only",
    ]
    with pytest.raises(VerifierUnavailable, match="math-verify is not installed"):
        MathVerifier().preflight()


def test_every_hardening_target_exists_and_a_missing_one_stops_hardening(monkeypatch):
    assert _worker.missing_targets() == []
    import latex2sympy2_extended.latex2sympy2 as l2s

    monkeypatch.setattr(_worker, "_HARDENED", False)
    monkeypatch.delattr(l2s, "convert_number")
    assert _worker.missing_targets() == ["latex2sympy2_extended.latex2sympy2.convert_number"]
    with pytest.raises(_worker.HardeningError, match="convert_number"):
        _worker.harden()
    assert _worker._HARDENED is False


def test_hardening_keeps_text_from_eval_through_the_libraries_entry_points():
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("math_hardening_probe.py"))],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["missing"] == []
    assert set(res["plain"]) == {"l2s.convert_number", "l2s.parse_number", "mvp.Number",
                                 "mvp.parse_expr_cached"}
    # unpatched, every probe reaches sympy's eval: the probes exercise the paths
    assert all(p["evals"] >= 1 for p in res["plain"].values()), res["plain"]
    # hardened, none does, and numbers still parse to the same values
    assert {k: v["evals"] for k, v in res["hardened"].items()} == dict.fromkeys(res["plain"], 0)
    for name, value in [("l2s.convert_number", "1000"), ("l2s.parse_number", "12"),
                        ("mvp.Number", "[42, '42']")]:
        assert res["plain"][name]["value"] == res["hardened"][name]["value"] == value
    assert res["plain"]["mvp.parse_expr_cached"]["value"] == "[1/2 + 3, '1/2 + 3']"
    assert "1/2 + 3," not in res["hardened"]["mvp.parse_expr_cached"]["value"]
    assert res["eval_guard"].startswith("raised ValueError: string parsing")


# -- deadlines ------------------------------------------------------------------------------

def test_soft_deadline_answers_soft_timeout_without_killing_the_worker():
    pool = WorkerPool(size=1)
    try:
        assert pool.compare("1", "(10^{9})!", 1.0) == (None, "soft_timeout")
        assert pool.restarts == 0
        assert pool.compare("x^2+2x+1", "(x+1)^2", 5.0) == (True, "symbolic")
    finally:
        pool.close()


def test_hard_deadline_kills_a_worker_that_does_not_answer():
    pool = WorkerPool(size=1)
    try:
        assert pool.compare("1", "1", 5.0) == (True, "symbolic")  # started and warm
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)  # stands in for C code that ignores the worker's own timer
        result: list = []
        caller = threading.Thread(target=lambda: result.append(pool.compare("1", "2", 0.5)), daemon=True)
        t = time.monotonic()
        caller.start()
        caller.join(5.0)
        assert result == [(None, "timeout")]
        assert time.monotonic() - t < 2.5
        assert pool.restarts == 1 and not _alive(pid)
        assert pool.compare("x^2+2x+1", "(x+1)^2", 5.0) == (True, "symbolic")
    finally:
        pool.close()


# -- exactness audit of math-verify's "equal" ----------------------------------------------

@pytest.fixture(scope="module")
def one_worker():
    pool = WorkerPool(size=1)
    yield pool
    pool.close()


@pytest.mark.parametrize("gold,pred", [
    ("\\sqrt{2}", "\\sqrt{2}+10^{-30}"), ("\\pi", "\\pi+10^{-20}"), ("\\sqrt{2}", "\\sqrt{2}+10^{-1000}\\pi"),
    ("\\sqrt{2}", "\\frac{14142135623730951}{10^{16}}"), ("\\sqrt{2}", "\\sqrt{2.00000000000000000001}"),
    ("x\\sqrt{2}", "x(\\sqrt{2}+10^{-30})"), ("(\\sqrt{2}, 1)", "(\\sqrt{2}+10^{-30}, 1)"),
    ("\\pi", "3.1415926"),  # 7 decimals: must be the correctly rounded 3.1415927
])
def test_worker_rejects_what_math_verify_calls_equal_only_by_chopping_digits(one_worker, gold, pred):
    assert one_worker.compare(gold, pred, 10.0) == (False, "exactly_different")


@pytest.mark.parametrize("gold,pred", [
    ("\\sqrt{3}+\\sqrt{2}", "\\sqrt{5+2\\sqrt{6}}"), ("0", "\\sin(\\pi)"), ("1", "\\sin^2 x+\\cos^2 x"),
    ("\\frac{5\\sqrt{42}}{27}", "\\frac{10\\sqrt{10.5}}{27}"), ("28\\%", "28"), ("\\frac{1}{12}", "0.0833333333333333"),
    ("\\pi", "3.141593"), ("\\tan^2(y)+1", "\\sec^2(y)"),
    ("\\text{odd}", "odd"),  # equal as text: symbols differ, the audit leaves it
])
def test_worker_audit_keeps_true_equalities(one_worker, gold, pred):
    assert one_worker.compare(gold, pred, 10.0) == (True, "symbolic")


# -- only verdicts are cached ---------------------------------------------------------------

@pytest.mark.parametrize("failure", [(None, "timeout"), (None, "soft_timeout"), (None, "memory"),
                                     (None, "error: worker died")])
def test_math_equal_does_not_cache_a_non_verdict(failure):
    clear_cache()
    pool = ScriptedPool(failure, (True, "symbolic"), (False, "not_equivalent"))
    assert math_equal("3", SYMBOLIC, pool=pool) == failure
    assert math_equal("3", SYMBOLIC, pool=pool) == (True, "symbolic")
    assert math_equal("3", SYMBOLIC, pool=pool) == (True, "symbolic")  # a verdict is cached
    assert len(pool.calls) == 2


@pytest.mark.parametrize("failure,unjudged", [((None, "timeout"), False), ((None, "error: worker died"), True)])
def test_verifier_does_not_cache_a_non_verdict(failure, unjudged):
    clear_cache()
    v = MathVerifier()
    pool = ScriptedPool(failure, (True, "symbolic"))
    v._pool = lambda: pool
    first = v(f"\\boxed{{{SYMBOLIC}}}", {"answer": "3"})
    assert (first.score, first.correct, first.info["reason"]) == (0.0, None, failure[1])
    assert is_unjudged(first) is unjudged
    second = v(f"\\boxed{{{SYMBOLIC}}}", {"answer": "3"})
    assert (second.score, second.correct, second.info["reason"]) == (1.0, True, "symbolic")
    assert v(f"\\boxed{{{SYMBOLIC}}}", {"answer": "3"}).score == 1.0
    assert len(pool.calls) == 2


def test_batch_sends_distinct_symbolic_answers_to_workers_concurrently():
    clear_cache()
    both_in_flight = threading.Barrier(2, timeout=5.0)

    class BarrierPool:
        def compare(self, gold, pred, timeout):
            both_in_flight.wait()  # only passes when two comparisons run at the same time
            return True, "symbolic"

    v = MathVerifier(max_workers=2)
    v._pool = BarrierPool
    out = v.batch(["\\boxed{\\log_2 8}", "\\boxed{\\log_3 27}"], [{"answer": "3"}] * 2)
    assert [(r.score, r.info["reason"]) for r in out] == [(1.0, "symbolic")] * 2


# -- missing backend, preflight -------------------------------------------------------------

@pytest.fixture
def pool_without_math_verify(tmp_path, monkeypatch):
    """A pool whose (spawned) workers import a math_verify that fails to load."""
    shadow = tmp_path / "shadow" / "math_verify"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('math_verify is not installed (test)')\n")
    monkeypatch.syspath_prepend(str(shadow.parent))
    pool = WorkerPool(size=1, start_method="spawn")
    yield pool
    pool.close()


def test_missing_math_verify_gives_unjudged_uncached_results_and_fails_preflight(pool_without_math_verify):
    clear_cache()
    v = MathVerifier()
    v._pool = lambda: pool_without_math_verify
    for _ in range(2):  # the second call asks the worker again: nothing was cached
        r = v(f"\\boxed{{{SYMBOLIC}}}", {"answer": "3"})
        assert (r.score, r.correct) == (0.0, None) and is_unjudged(r)
        assert r.info["error"] == ("math verifier backend: error: backend unavailable: ImportError: "
                                   "math_verify is not installed (test)")
    assert v("\\boxed{3}", {"answer": "3"}).score == 1.0  # in-process paths still judge
    with pytest.raises(VerifierUnavailable, match="backend unavailable: ImportError"):
        v.preflight()


def test_preflight_passes_with_a_working_backend():
    v = MathVerifier(workers=1)
    try:
        v.preflight()
    finally:
        v.close()


# -- lifecycle ------------------------------------------------------------------------------

def test_close_stops_an_owned_pool():
    v = MathVerifier(workers=2)
    r = v(f"\\boxed{{{SYMBOLIC}}}", {"answer": "3"})
    assert r.score == 1.0
    pool = v._own
    pids = pool.pids()
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    v.close()
    v.close()  # idempotent
    assert pool.closed and pool.pids() == [] and not any(_alive(p) for p in pids)
    assert pool.compare("1", "1", 1.0) == (None, "error: pool closed")


def test_shared_pool_stops_when_the_last_lease_is_given_back(monkeypatch):
    monkeypatch.setattr(pool_mod, "_POOL", None)  # a shared pool of this test's own
    monkeypatch.setattr(pool_mod, "_LEASES", 0)
    clear_cache()
    a, b = get_verifier("math"), get_verifier("math")
    assert a("\\boxed{\\log_2 8}", {"answer": "3"}).score == 1.0
    assert b("\\boxed{\\log_3 9}", {"answer": "2"}).score == 1.0
    shared = pool_mod._POOL
    pids = shared.pids()
    assert pids and pool_mod._LEASES == 2
    with a:
        pass  # __exit__ closes: one lease back
    assert not shared.closed and all(_alive(p) for p in pids)
    assert b("\\boxed{\\log_5 25}", {"answer": "2"}).score == 1.0
    b.close()
    assert shared.closed and pool_mod._POOL is None and not any(_alive(p) for p in pids)
