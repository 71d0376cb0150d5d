"""SWE verifier: apply the response's patch to a repository in a sandbox and run its tests.

::

    >>> v = get_verifier("swe", regression_score=-0.5, apply_fail_score=-1.0)
    >>> task = {"repo": "tests/data/swe/toolz_frequencies/repo.tar.gz",
    ...         "fail_to_pass": ["toolz/tests/test_itertoolz.py::test_frequencies"],
    ...         "pass_to_pass": ["toolz/tests/test_itertoolz.py::test_interpose"]}
    >>> v("```diff\\n" + open(".../gold.diff").read() + "```", task).score
    1.0

Task: ``repo`` (a directory or ``.tar.gz`` of the source tree; a single top-level folder in the
archive is stripped), ``fail_to_pass`` and ``pass_to_pass`` (pytest node ids relative to the repo
root), ``test_command`` (default ``python3 -m pytest``; node ids are appended), ``env`` (extra
environment), ``setup`` (optional shell command run after the patch, before the tests),
``timeout`` (seconds, default the verifier's ``test_timeout``).

The patch is the response's last ```diff / ```patch block, else a bare unified diff starting at
the first ``diff --git`` or ``--- `` line. It is applied with ``git apply`` (fallback
``patch -p1``). Files that define the tests (the files named in the node ids and every
``conftest.py``) are restored after the patch, so a patch cannot rewrite the tests it is judged
by; a ``conftest.py`` the patch adds is removed and root ``pytest.ini``/``tox.ini``/``setup.cfg``
are restored too. Each test's outcome is recorded by a small pytest plugin and returned with a per-run nonce.

Scores: 1.0 when every FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes;
``regression_score`` when a PASS_TO_PASS test breaks; ``fail_score`` when only FAIL_TO_PASS tests
fail; ``apply_fail_score`` when the patch does not apply; ``no_patch_score`` when the response
has no diff (all default 0.0; M1 uses zero or negative rewards for these). ``info`` lists
``failed_fail_to_pass``, ``broken_pass_to_pass``, ``outcomes``, ``status``, ``queue_s``.

Not defended: the patched code runs inside the pytest process, so a patch written to attack the
outcome plugin itself could forge results; the restored test files and the nonce stop the simple
forms (editing tests, printing summaries).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import re
import secrets
import tarfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewards.base import BaseVerifier, RewardResult, register_verifier, safe_call
from rewards.code import _as_limits, read_verdict, shared_pool

_DIFF_FENCE = re.compile(r"```[ \t]*(diff|patch)[^\n]*\n(.*?)```", re.DOTALL)


def extract_patch(response: str) -> str | None:
    """The last ```diff/```patch block, else a bare diff from its first header line; None if none."""
    blocks = _DIFF_FENCE.findall(response)
    if blocks:
        text = blocks[-1][1]
    else:
        m = re.search(r"^(diff --git |--- )", response, re.MULTILINE)
        if not m:
            return None
        text = response[m.start():]
        text = text.split("\n```", 1)[0]
    if "@@" not in text:
        return None
    return text if text.endswith("\n") else text + "\n"


_REPORT_PLUGIN = r'''
import json, os
_OUT = {}
def pytest_runtest_logreport(report):
    prev = _OUT.get(report.nodeid)
    if report.failed:
        _OUT[report.nodeid] = "failed" if report.when == "call" else "error"
    elif report.skipped:
        _OUT.setdefault(report.nodeid, "skipped")
    elif report.when == "call" and prev is None:
        _OUT[report.nodeid] = "passed"
def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["M1RL_SWE_REPORT"], "w") as f:
        json.dump(_OUT, f)
'''

_HARNESS = r'''
import base64, io, json, os, shlex, subprocess, sys, tarfile, time
P = json.loads(sys.stdin.buffer.read())
NONCE = P.pop("nonce")
OUT_FD = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
REPO = "/work/repo"

def done(**kw):
    os.write(OUT_FD, (json.dumps(dict(kw, nonce=NONCE)) + "\n").encode())
    raise SystemExit(0)

def tail(b, n=3000):
    return b[-n:].decode("utf-8", "replace")

with tarfile.open("/work/repo.tar.gz") as t:
    members = t.getmembers()
    tops = {m.name.split("/")[0] for m in members}
    strip = len(tops) == 1 and any(m.isdir() and m.name in tops for m in members)
    for m in members:
        name = (m.name.split("/", 1) + [""])[1] if strip else m.name
        if not name or name.startswith("/") or ".." in name.split("/"):
            continue
        if m.issym() or m.islnk() or m.isdev():
            continue
        dest = os.path.join(REPO, name)
        if m.isdir():
            os.makedirs(dest, exist_ok=True)
        elif m.isfile():
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(t.extractfile(m).read())
            os.chmod(dest, 0o755 if m.mode & 0o100 else 0o644)
os.unlink("/work/repo.tar.gz")

# files that define the tests: restored after the patch
protected = {}
ids = P["fail_to_pass"] + P["pass_to_pass"]
paths = {i.split("::")[0] for i in ids}
def conftests():
    out = set()
    for root, _, files in os.walk(REPO):
        for f in files:
            if f == "conftest.py":
                out.add(os.path.relpath(os.path.join(root, f), REPO))
    return out
paths |= conftests() | {"pytest.ini", "tox.ini", "setup.cfg"}
for p in paths:
    full = os.path.join(REPO, p)
    protected[p] = open(full, "rb").read() if os.path.isfile(full) else None

env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
patch_path = "/tmp/m1rl.patch"
with open(patch_path, "w") as f:
    f.write(P["patch"])
r = subprocess.run(["git", "apply", "--whitespace=nowarn", "-v", patch_path], cwd=REPO,
                   capture_output=True, env=env)
how = "git apply"
if r.returncode != 0:
    r2 = subprocess.run(["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch",
                         "-r", "-", "-i", patch_path], cwd=REPO, capture_output=True)
    if r2.returncode != 0:
        done(status="apply_failed", log=tail(r.stderr + b"\n" + r2.stdout + r2.stderr))
    how = "patch -p1"
touched = []
for p in conftests() - set(protected):   # a conftest.py added by the patch is removed too
    protected[p] = None
for p, content in protected.items():
    full = os.path.join(REPO, p)
    now = open(full, "rb").read() if os.path.isfile(full) else None
    if now != content:
        touched.append(p)
        if content is None:
            os.unlink(full)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(content)

env = dict(os.environ)
env.update(P["env"])
env["PYTHONPATH"] = "/work/.m1rl" + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
env["M1RL_SWE_REPORT"] = "/tmp/m1rl-report-%s.json" % NONCE[:8]
deadline = time.monotonic() + P["timeout"]
if P.get("setup"):
    s = subprocess.run(P["setup"], shell=True, cwd=REPO, env=env, capture_output=True,
                       timeout=max(1, deadline - time.monotonic()))
    if s.returncode != 0:
        done(status="setup_failed", log=tail(s.stdout + s.stderr), applied_with=how)
cmd = (P["test_command"] + " -p no:cacheprovider -p m1rl_swe_report -q --rootdir " + REPO +
       " " + " ".join(shlex.quote(i) for i in ids))
try:
    t = subprocess.run(cmd, shell=True, cwd=REPO, env=env, capture_output=True,
                       timeout=max(1, deadline - time.monotonic()))
    log, rc, timed_out = t.stdout + t.stderr, t.returncode, False
except subprocess.TimeoutExpired as e:
    log, rc, timed_out = (e.stdout or b"") + (e.stderr or b""), None, True
try:
    outcomes = json.load(open(env["M1RL_SWE_REPORT"]))
except (OSError, ValueError):
    outcomes = {}
done(status="ran", outcomes=outcomes, exit_code=rc, timed_out=timed_out, log=tail(log),
     applied_with=how, reverted_test_files=touched)
'''


@register_verifier("swe")
class SWEVerifier(BaseVerifier):
    """Scores a unified diff by the repository's FAIL_TO_PASS / PASS_TO_PASS tests."""

    def __init__(self, image: str | None = None, pool_size: int = 2,
                 max_concurrency: int | None = None, limits: Any = None,
                 test_timeout: float = 300.0, fail_score: float = 0.0,
                 regression_score: float = 0.0, apply_fail_score: float = 0.0,
                 no_patch_score: float = 0.0):
        self.image, self.pool_size = image, pool_size
        self.max_workers = max_concurrency or pool_size
        self.limits = _as_limits(limits, memory_mb=2048, pids=256, workdir_mb=512, tmp_mb=64,
                                 cpus=1.0, timeout_s=test_timeout, max_runs=50)
        self.test_timeout = test_timeout
        self.fail_score, self.regression_score = fail_score, regression_score
        self.apply_fail_score, self.no_patch_score = apply_fail_score, no_patch_score
        self._pool: Any = None
        self._tar_cache: dict[tuple, bytes] = {}
        self._tar_lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_tar_lock")}
        state.update(_pool=None, _tar_cache={})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tar_lock = threading.Lock()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            self._pool = shared_pool(self.image, self.pool_size, self.limits)
        return self._pool

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        t_submit = time.monotonic()

        def one(rt: tuple[str, dict]) -> RewardResult:
            waited = time.monotonic() - t_submit
            res = safe_call(self.score, *rt)
            res.info["queue_s"] = round(res.info.get("queue_s", 0.0) + waited, 4)
            return res

        with cf.ThreadPoolExecutor(max(1, self.max_workers), thread_name_prefix="swe") as ex:
            return list(ex.map(one, zip(responses, tasks, strict=True)))

    def _repo_tarball(self, repo: str | os.PathLike) -> bytes:
        path = Path(repo)
        if path.is_file():
            key: tuple = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
        elif path.is_dir():
            files = [p for p in sorted(path.rglob("*")) if p.is_file() and ".git" not in p.parts
                     and "__pycache__" not in p.parts]
            key = (str(path.resolve()), tuple((str(p), p.stat().st_mtime_ns) for p in files))
        else:
            raise FileNotFoundError(f"task repo {repo!r} is neither a directory nor a file")
        with self._tar_lock:
            if key in self._tar_cache:
                return self._tar_cache[key]
        if path.is_file():
            data = path.read_bytes()
        else:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as t:
                for p in files:
                    t.add(p, arcname=str(p.relative_to(path)))
            data = buf.getvalue()
        with self._tar_lock:
            if len(self._tar_cache) > 32:
                self._tar_cache.clear()
            self._tar_cache[key] = data
        return data

    def score(self, response: str, task: dict) -> RewardResult:
        f2p, p2p = list(task.get("fail_to_pass", [])), list(task.get("pass_to_pass", []))
        if not f2p:
            raise ValueError("SWE task needs a non-empty 'fail_to_pass' list")
        patch = extract_patch(response)
        if patch is None:
            return RewardResult(self.no_patch_score, False, {"status": "no_patch",
                                                              "error": "no unified diff found"})
        timeout = float(task.get("timeout", self.test_timeout))
        nonce = secrets.token_hex(16)
        payload = {"nonce": nonce, "patch": patch, "fail_to_pass": f2p, "pass_to_pass": p2p,
                   "test_command": task.get("test_command") or "python3 -m pytest",
                   "env": {str(k): str(v) for k, v in (task.get("env") or {}).items()},
                   "setup": task.get("setup"), "timeout": timeout}
        files = {"repo.tar.gz": self._repo_tarball(task["repo"]), "harness.py": _HARNESS,
                 ".m1rl/m1rl_swe_report.py": _REPORT_PLUGIN}
        r = self.pool.run(["python3", "-I", "/work/harness.py"], files=files,
                          stdin=json.dumps(payload), timeout=timeout + 30, max_output=1 << 20)
        info: dict[str, Any] = {"queue_s": round(r.queue_s, 4), "sandbox_s": round(r.duration, 4)}
        verdict = read_verdict(r.stdout, nonce)
        if verdict is None:
            info.update(status="sandbox_failed", error=r.error or f"no verdict (exit "
                        f"{r.exit_code}, timed_out={r.timed_out}, oom={r.oom_killed})",
                        stderr=r.stderr[-1000:])
            return RewardResult(self.fail_score, False, info)
        info["status"] = verdict["status"]
        if verdict["status"] == "apply_failed":
            info["log"] = verdict.get("log", "")
            return RewardResult(self.apply_fail_score, False, info)
        if verdict["status"] != "ran":
            info["log"] = verdict.get("log", "")
            return RewardResult(self.fail_score, False, info)
        outcomes = {str(k): str(v) for k, v in (verdict.get("outcomes") or {}).items()}
        failed_f2p = [t for t in f2p if outcomes.get(t) != "passed"]
        broken_p2p = [t for t in p2p if outcomes.get(t) != "passed"]
        info.update(failed_fail_to_pass=failed_f2p, broken_pass_to_pass=broken_p2p,
                    outcomes={t: outcomes.get(t, "missing") for t in f2p + p2p},
                    timed_out=verdict.get("timed_out", False),
                    reverted_test_files=verdict.get("reverted_test_files", []),
                    log_tail=str(verdict.get("log", ""))[-1500:])
        if not failed_f2p and not broken_p2p:
            return RewardResult(1.0, True, info)
        return RewardResult(self.regression_score if broken_p2p else self.fail_score, False, info)


__all__ = ["SWEVerifier", "extract_patch"]
