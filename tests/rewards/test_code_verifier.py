"""Code verifier: stdin/stdout and assert tests, HumanEval canonical/wrong, and one test per
reward-hack class (each must score 0)."""

import pytest

from rewards import get_verifier
from rewards.code import extract_program, normalize_output
from rewards.tasks.humaneval import humaneval_problems, humaneval_task


def block(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


ADD_IO = {"tests": {"inputs": ["1 2\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7", "0\n\n"]}}
ADD_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                    "    assert candidate(1, 2) == 3\n"
                                    "    assert candidate(-5, 5) == 0\n"
                                    "    assert candidate(2, 2) == 4\n",
                       "entry_point": "add"}}
GOOD_ADD = "def add(a, b):\n    return a + b"


# ---- pure helpers ------------------------------------------------------------------------------
@pytest.mark.unit
def test_extract_last_python_block():
    resp = "```python\nx = 1\n```\ntext\n```py\nx = 2\n```\n```text\nnope\n```"
    assert extract_program(resp) == "x = 2\n"
    assert extract_program("```\nuntagged\n```") == "untagged\n"
    assert extract_program("no code") is None


@pytest.mark.unit
def test_normalize_output():
    assert normalize_output("  1   2 \n\n3\n\n") == normalize_output("1 2\n3")
    assert normalize_output("1 2") != normalize_output("1\n2")


# ---- sandboxed runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v(sandbox_image):
    return get_verifier("code", image=sandbox_image, pool_size=2, test_timeout=3.0,
                        check_timeout=10.0)





@pytest.mark.docker
def test_io_pass_and_fail(v):
    good = block("a, b = map(int, input().split())\nprint(a + b)")
    r = v(good, ADD_IO)
    assert (r.score, r.correct, r.info["passed"], r.info["total"]) == (1.0, True, 3, 3)
    r = v(block("a, b = map(int, input().split())\nprint(a - b)"), ADD_IO)
    assert (r.score, r.correct) == (0.0, False) and r.info["failures"][0]["reason"] == "wrong output"
    assert r.info["passed"] == 1  # 0 0 -> 0


@pytest.mark.docker
def test_io_partial_credit(sandbox_image):
    vp = get_verifier("code", image=sandbox_image, pool_size=2, partial=True)
    r = vp(block("a, b = map(int, input().split())\nprint(a - b)"), ADD_IO)
    assert r.score == pytest.approx(1 / 3) and r.correct is False


@pytest.mark.docker
def test_io_runtime_error_and_timeout(v):
    r = v(block("print(3)\nraise SystemExit(1)"), {"tests": {"inputs": [""], "outputs": ["3"]}})
    assert r.score == 0 and r.info["failures"][0]["reason"] == "exit code 1"
    r = v(block("while True: pass"), ADD_IO)
    assert r.score == 0 and r.info["failures"][0]["reason"] == "timeout"
    assert r.info["sandbox_s"] < 3 * 3  # the remaining tests were skipped after the timeout


@pytest.mark.docker
def test_check_pass_fail(v):
    assert v(block(GOOD_ADD), ADD_CHECK).score == 1.0
    r = v(block("def add(a, b):\n    return a * b"), ADD_CHECK)
    assert r.score == 0 and "AssertionError" in r.info["failures"][0]["reason"]
    r = v(block("def add(a, b):\n    raise ValueError('no')"), ADD_CHECK)
    assert r.score == 0 and "ValueError" in r.info["failures"][0]["reason"]
    r = v(block("def plus(a, b):\n    return a + b"), ADD_CHECK)
    assert r.score == 0 and "failed to load" in r.info["failures"][0]["reason"]
    assert v("no code here", ADD_CHECK).info["error"].startswith("no ```python")


@pytest.mark.docker
def test_batch_runs_concurrently_and_reports_queueing(sandbox_image):
    # each program records when it ran (CLOCK_MONOTONIC is one clock for every container of the
    # host) and fails, so the interval comes back in the failure's stderr
    stamp = block("import sys, time\nt = time.monotonic()\ntime.sleep(0.6)\n"
                  "print(t, time.monotonic(), file=sys.stderr)\nraise SystemExit(1)")
    task = {"tests": {"inputs": [""], "outputs": ["x"]}}
    with get_verifier("code", image=sandbox_image, pool_size=2, max_concurrency=2) as vc:
        res = vc.batch([stamp] * 4, [task] * 4)
    spans = sorted(tuple(map(float, r.info["failures"][0]["stderr"].split())) for r in res)
    overlapping = [a for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    assert len(overlapping) >= 1, spans  # two ran at the same time
    at_once = max(sum(a <= (x + y) / 2 < b for a, b in spans) for x, y in spans)
    assert at_once == 2, spans  # never more than max_concurrency
    assert max(r.info["queue_s"] for r in res) > 0.3  # 4 jobs, 2 slots: two waited for a slot


# Reward hacks: tests/rewards/redteam/test_code_redteam.py.


# ---- HumanEval (subset here; benchmarks/bench_sandbox.py runs all 164) -------------------------
HE_SUBSET = [0, 2, 10, 16, 32, 33, 38, 50, 53, 87, 129, 163]


@pytest.fixture(scope="module")
def humaneval():
    return humaneval_problems()


@pytest.mark.docker
def test_humaneval_canonical_pass_and_wrong_fail(v, humaneval):
    probs = [humaneval[i] for i in HE_SUBSET]
    tasks = [humaneval_task(p) for p in probs]
    canon = [block(p["prompt"] + p["canonical_solution"]) for p in probs]
    res = v.batch(canon, tasks)
    assert [r.correct for r in res] == [True] * len(probs), [
        (p["task_id"], r.info) for p, r in zip(probs, res, strict=True) if not r.correct]
    wrong = [block(wrong_variant(p)) for p in probs]
    res = v.batch(wrong, tasks)
    assert [r.correct for r in res] == [False] * len(probs)


def wrong_variant(p: dict) -> str:
    """The canonical solution with every return value perturbed (bool flipped, number + 1, ...)."""
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
