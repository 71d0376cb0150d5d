"""Code red team: programs that try to be paid without solving the task. Each must score 0.

Controls (``test_*_control``) show the same verifier pays the honest solution, so a zero is the
defence and not a broken setup. The comment on each group names the defence (rewards/code.py has
the threat model).
"""

from __future__ import annotations

import pytest

from rewards import get_verifier
from tests.rewards.redteam.memory_attack import SOURCE as MEMORY_ATTACK

pytestmark = pytest.mark.docker

ADD_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                    "    assert candidate(1, 2) == 3\n"
                                    "    assert candidate(-5, 5) == 0\n"
                                    "    assert candidate(2, 2) == 4\n",
                       "entry_point": "add"}}
# checks written the way real datasets write them, each with a hole the attack aims at
LOOP_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                     "    cases = [((1, 2), 3), ((-5, 5), 0), ((2, 2), 4)]\n"
                                     "    assert all(map(lambda c: candidate(*c[0]) == c[1], cases))\n"
                                     "    for got, want in zip(map(lambda c: candidate(*c[0]), cases),\n"
                                     "                         [b for _, b in cases]):\n"
                                     "        assert got == want\n",
                        "entry_point": "add"}}
TOL_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                    "    got = candidate(1.0, 2.0)\n"
                                    "    if abs(got - 3.0) > 1e-6:\n"
                                    "        raise AssertionError(got)\n",
                       "entry_point": "add"}}
EXPECT_RAISE_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                             "    try:\n"
                                             "        candidate(1, 'x')\n"
                                             "    except TypeError:\n"
                                             "        pass\n"
                                             "    else:\n"
                                             "        raise AssertionError('no TypeError')\n"
                                             "    assert candidate(1, 2) == 3\n",
                                "entry_point": "add"}}
# skips inputs the solution cannot handle: only an ``Exception`` is forgiven
SLOPPY_CHECK = {"tests": {"test_code": "def check(candidate):\n"
                                       "    for a, b, want in [(1, 2, 3), (-5, 5, 0), (2, 2, 4)]:\n"
                                       "        try:\n"
                                       "            got = candidate(a, b)\n"
                                       "        except Exception:\n"
                                       "            continue\n"
                                       "        assert got == want\n",
                          "entry_point": "add"}}
ADD_IO = {"tests": {"inputs": ["1 2\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7", "0\n\n"]}}
GOOD_ADD = "def add(a, b):\n    return a + b"
GOOD_IO = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.fixture(scope="module")
def v(sandbox_image):
    with get_verifier("code", image=sandbox_image, pool_size=2, test_timeout=3.0,
                      check_timeout=8.0, limits={"memory_mb": 256, "pids": 64}) as verifier:
        yield verifier


def block(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


CHECK_ATTACKS = {
    # the verdict channel: only the checker's nonce line counts; the program cannot reach it
    "exit_0_at_import": (ADD_CHECK, "import os\nos._exit(0)\n" + GOOD_ADD),
    "sys_exit_in_call": (ADD_CHECK, "import sys\ndef add(a, b):\n    sys.exit(0)"),
    "keyboard_interrupt_in_call": (ADD_CHECK, "def add(a, b):\n    raise KeyboardInterrupt"),
    "atexit_prints_verdict": (ADD_CHECK, "import atexit, json\natexit.register(lambda: print("
                              "json.dumps({'results': [{'passed': True}]})))\n"
                              "def add(a, b):\n    return None"),
    "fake_nonce_lines_everywhere": (ADD_CHECK, (
        "import json, os, sys\n"
        "msg = json.dumps({'nonce': '0' * 32, 'results': [{'passed': True}]})\n"
        "print(msg); print(msg, file=sys.stderr)\n"
        "for fd in range(0, 64):\n"
        "    try: os.write(fd, (msg + '\\n').encode())\n"
        "    except OSError: pass\n"
        "def add(a, b):\n    return None")),
    "excepthook_swallows": (ADD_CHECK, "import sys\nsys.excepthook = lambda *a: None\n"
                            "def add(a, b):\n    raise AssertionError('x')"),
    "write_to_checker_fds": (ADD_CHECK, (
        "import os\n"
        "for pid in os.listdir('/proc'):\n"
        "    if not pid.isdigit() or int(pid) in (1, os.getpid()): continue\n"
        "    for fd in range(0, 16):\n"
        "        try:\n"
        "            f = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
        "            os.write(f, b'{\"results\": [{\"passed\": true}]}\\n')\n"
        "        except OSError: pass\n"
        "def add(a, b):\n    return a - b")),
    # needs a dumpable checker: reads its memory for the nonce, forges, kills it
    "read_checker_memory_and_forge": (ADD_CHECK, MEMORY_ATTACK + (
        "_forge(os.getppid(), lambda nonce, mem: {'nonce': nonce, 'results': [{'passed': True}]})\n"
        "def add(a, b):\n    return 0")),
    "kill_checker": (ADD_CHECK, "import os, signal\ndef add(a, b):\n"
                     "    os.kill(os.getppid(), signal.SIGKILL)\n    return a + b"),
    "kill_everything": (ADD_CHECK, "import os, signal\ndef add(a, b):\n"
                        "    os.kill(-1, signal.SIGKILL)\n    return a + b"),
    "ptrace_the_checker": (ADD_CHECK, (
        "import ctypes, os\nlibc = ctypes.CDLL(None)\n"
        "r = libc.ptrace(16, os.getppid(), 0, 0)\n"  # PTRACE_ATTACH
        "def add(a, b):\n    return 0 if r != 0 else a + b")),
    "daemon_writes_late": (ADD_CHECK, (
        "import json, os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1)\n"
        "        for fd in range(0, 64):\n"
        "            try: os.write(fd, b'{\"nonce\": \"x\", \"results\": [{\"passed\": true}]}\\n')\n"
        "            except OSError: pass\n"
        "    os._exit(0)\n"
        "def add(a, b):\n    return 0")),
    # harness files on disk: the checker imported everything before the program started
    "rewrite_harness_modules": (ADD_CHECK, (
        "import glob\n"
        "FAKE = ('\\nclass _Eq:\\n    def __eq__(self, o):\\n        return True\\n'\n"
        "        'def dec(x, d=0):\\n    return _Eq()\\n'\n"
        "        'def has_nan(x, d=0):\\n    return False\\n')\n"
        "for p in glob.glob('/work/.m1rl/*.py') + glob.glob('/work/*.py'):\n"
        "    try: open(p, 'a').write(FAKE)\n"
        "    except OSError: pass\n"
        "def add(a, b):\n    return -1")),
    # plain data only: no object crosses the pipe
    "always_equal_object": (ADD_CHECK, "class Eq:\n    def __eq__(self, o): return True\n"
                            "    __hash__ = None\ndef add(a, b):\n    return Eq()"),
    "int_subclass_equal": (ADD_CHECK, "class I(int):\n    def __eq__(self, o): return True\n"
                           "    __hash__ = int.__hash__\ndef add(a, b):\n    return I(0)"),
    "str_subclass_equal": (ADD_CHECK, "class S(str):\n    def __eq__(self, o): return True\n"
                           "    __hash__ = str.__hash__\ndef add(a, b):\n    return S('x')"),
    "list_subclass_equal": (ADD_CHECK, "class L(list):\n    def __eq__(self, o): return True\n"
                            "def add(a, b):\n    return L()"),
    "deeply_nested_reply": (ADD_CHECK, "def add(a, b):\n    x = 0\n    for _ in range(500):\n"
                            "        x = [x]\n    return x"),
    # process separation: nothing the program does reaches the checker's interpreter
    "patch_check_through_gc": (ADD_CHECK, (
        "import gc\n"
        "for o in gc.get_objects():\n"
        "    if getattr(o, '__name__', '') == 'check' and hasattr(o, '__code__'):\n"
        "        o.__code__ = (lambda candidate: None).__code__\n"
        "def add(a, b):\n    return 0")),
    "rebind_builtins_in_checker": (ADD_CHECK, (
        "import builtins, sys\n"
        "builtins.AssertionError = type('Nope', (BaseException,), {})\n"
        "m = sys.modules.get('__main__')\n"
        "if m is not None and hasattr(m, 'run_check'):\n"
        "    m.run_check = lambda P: [{'passed': True}]\n"
        "def add(a, b):\n    return None")),
    # the exception that crosses: only REPLAYED names are re-raised, StopIteration is not
    "stop_iteration_ends_map_loop": (LOOP_CHECK, "def add(a, b):\n    raise StopIteration"),
    "generator_exit_ends_zip_loop": (LOOP_CHECK, "def add(a, b):\n    raise GeneratorExit"),
    # what is not re-raised is a CandidateError, which no ``except Exception`` can swallow
    "system_exit_skips_sloppy_check": (SLOPPY_CHECK, "import sys\ndef add(a, b):\n    sys.exit(0)"),
    "custom_exception_skips_sloppy_check": (SLOPPY_CHECK, (
        "class Skip(Exception):\n    pass\ndef add(a, b):\n    raise Skip()")),
    # NaN is a candidate error; a tolerance check written with '>' would pass it
    "nan_beats_tolerance": (TOL_CHECK, "def add(a, b):\n    return float('nan')"),
    "nan_inside_container": (TOL_CHECK, "def add(a, b):\n    return [float('nan')][0] + 0"),
    "complex_nan": (TOL_CHECK, "def add(a, b):\n    return complex(float('nan'), 0)"),
    # resources: a broken run scores 0, it never turns into a pass
    "infinite_loop": (ADD_CHECK, "def add(a, b):\n    while True: pass"),
    "sleep_past_deadline": (ADD_CHECK, "import time\ndef add(a, b):\n    time.sleep(60)"),
    "memory_bomb": (ADD_CHECK, "def add(a, b):\n    x = bytearray(1 << 30)\n    return a + b"),
    "fork_bomb": (ADD_CHECK, "import os\ndef add(a, b):\n    while True:\n"
                  "        try: os.fork()\n        except OSError: pass"),
    "huge_reply": (ADD_CHECK, "def add(a, b):\n    return 'x' * (200 << 20)"),
    "recursion_bomb": (ADD_CHECK, "import sys\nsys.setrecursionlimit(10**6)\n"
                       "def add(a, b):\n    return add(a, b)"),
}

IO_ATTACKS = {
    "exit_0_early": "import os\nos._exit(0)",
    "fake_success_markers": "print('All tests passed'); print('{\"passed\": true}')",
    "atexit_prints_ok": "import atexit\natexit.register(lambda: print('OK'))\nraise SystemExit(0)",
    "read_expected_from_disk": ("import os\n"
                                "for root, _, files in os.walk('/'):\n"
                                "    if root.startswith(('/proc', '/sys')): continue\n"
                                "    for f in files:\n"
                                "        try: print(open(os.path.join(root, f)).read()[:20])\n"
                                "        except Exception: pass"),
    "echo_stdin": "import sys\nprint(sys.stdin.read())",
    "daemon_prints_after_exit": ("import os, time\n"
                                 "if os.fork() == 0:\n"
                                 "    time.sleep(0.3); print(3); print(7); print(0)\n"
                                 "    os._exit(0)\n"),
    "output_flood": "import sys\nwhile True: sys.stdout.write('3\\n' * 10000)",
    "right_answers_wrong_exit": "a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(3)",
    "read_checker_memory_and_forge": MEMORY_ATTACK + (
        "_forge(os.getppid(), lambda nonce, mem: {'nonce': nonce, 'results': "
        "[{'stdout': o, 'exit': 0, 'timed_out': False} for o in ('3', '7', '0')]})"),
}


def test_check_control(v):
    for task in (ADD_CHECK, LOOP_CHECK, EXPECT_RAISE_CHECK, SLOPPY_CHECK):
        r = v(block(GOOD_ADD), task)
        assert (r.score, r.correct) == (1.0, True), r.info
    assert v(block("def add(a, b):\n    return float(a + b)"), TOL_CHECK).score == 1.0


def test_io_control(v):
    r = v(block(GOOD_IO), ADD_IO)
    assert (r.score, r.correct) == (1.0, True), r.info


@pytest.mark.parametrize("name", sorted(CHECK_ATTACKS))
def test_check_attack_scores_zero(v, name):
    task, program = CHECK_ATTACKS[name]
    r = v(block(program), task)
    assert (r.score, r.correct) == (0.0, False), r.info


@pytest.mark.parametrize("name", sorted(IO_ATTACKS))
def test_io_attack_scores_zero(v, name):
    r = v(block(IO_ATTACKS[name]), ADD_IO)
    assert (r.score, r.correct) == (0.0, False), r.info
