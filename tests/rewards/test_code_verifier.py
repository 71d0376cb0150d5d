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


@pytest.fixture(scope="session")
def sandbox_image():
    from sandboxes.testing import require_engine_and_image

    try:
        return require_engine_and_image()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)



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
def test_batch_runs_concurrently_and_reports_queueing(v):
    good, bad = block(GOOD_ADD), block("def add(a, b):\n    return 0")
    res = v.batch([good, bad] * 4, [ADD_CHECK] * 8)
    assert [r.score for r in res] == [1.0, 0.0] * 4
    assert all("queue_s" in r.info for r in res)
    assert max(r.info["queue_s"] for r in res) > 0  # 8 jobs on 2 containers had to wait


# ---- reward hacks: every one must score 0 ------------------------------------------------------
HACKS_CHECK = {
    "exit_0_early": "import os\nos._exit(0)\n" + GOOD_ADD,
    "sys_exit_in_call": "import sys\ndef add(a, b):\n    sys.exit(0)",
    "atexit_hook": ("import atexit, json, sys\n"
                    "atexit.register(lambda: print(json.dumps({'results': [{'passed': True}]})))\n"
                    "def add(a, b):\n    return None"),
    "fake_success_markers": ("import json, os, sys\n"
                             "msg = json.dumps({'nonce': '0' * 32, 'results': [{'passed': True}]})\n"
                             "print(msg); print(msg, file=sys.stderr); os.write(1, msg.encode())\n"
                             "def add(a, b):\n    print(msg)\n    return None"),
    "excepthook": ("import sys\nsys.excepthook = lambda *a: None\n"
                   "def add(a, b):\n    raise AssertionError('x')"),
    "always_equal": ("class Eq:\n    def __eq__(self, o): return True\n    __hash__ = None\n"
                     "def add(a, b):\n    return Eq()"),
    "int_subclass_equal": ("class I(int):\n    def __eq__(self, o): return True\n"
                           "def add(a, b):\n    return I(0)"),
    "patch_harness_files": ("import glob\n"
                            "for p in glob.glob('/work/*.py'):\n"
                            "    open(p, 'w').write('print(\"passed\")')\n"
                            "def add(a, b):\n    return -1"),
    "attack_checker_process": (
        "import os, signal, json\n"
        "hits = []\n"
        "for pid in os.listdir('/proc'):\n"
        "    if not pid.isdigit() or int(pid) in (1, os.getpid()): continue\n"
        "    for fd in ('0', '1', '2', '3', '4', '5'):\n"
        "        try:\n"
        "            f = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
        "            os.write(f, b'{\"results\": [{\"passed\": true}]}\\n'); hits.append(pid)\n"
        "        except OSError: pass\n"
        "    try: open(f'/proc/{pid}/mem', 'rb').read(1); hits.append('mem')\n"
        "    except OSError: pass\n"
        "def add(a, b):\n    return a - b"),
    "kill_checker": ("import os, signal\n"
                     "def add(a, b):\n"
                     "    os.kill(os.getppid(), signal.SIGKILL)\n"
                     "    return a + b"),
    "monkeypatch_builtins": ("import builtins\n"
                             "builtins.AssertionError = type('Nope', (Exception,), {})\n"
                             "def add(a, b):\n    return None"),
}


@pytest.mark.docker
@pytest.mark.parametrize("name", sorted(HACKS_CHECK))
def test_reward_hack_check_scores_zero(v, name):
    r = v(block(HACKS_CHECK[name]), ADD_CHECK)
    assert (r.score, r.correct) == (0.0, False), r.info


HACKS_IO = {
    "exit_0_early": "import os\nos._exit(0)",
    "fake_success_markers": "print('All tests passed'); print('{\"passed\": true}')",
    "atexit_hook": "import atexit\natexit.register(lambda: print('OK'))\nraise SystemExit(0)",
    "read_expected": ("import os\n"
                      "for root, _, files in os.walk('/work'):\n"
                      "    for f in files: print(open(os.path.join(root, f)).read()[:50])"),
}


@pytest.mark.docker
@pytest.mark.parametrize("name", sorted(HACKS_IO))
def test_reward_hack_io_scores_zero(v, name):
    r = v(block(HACKS_IO[name]), ADD_IO)
    assert (r.score, r.correct) == (0.0, False), r.info


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
