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
root), ``test_args`` (extra pytest arguments, e.g. ``["-p", "xdist"]``; a ``test_command`` of
the form ``python3 -m pytest ARGS`` is accepted for its ARGS), ``env`` (extra environment;
``PYTHONPATH`` entries are relative to the repo), ``setup`` (optional shell command run after the
patch, before the tests), ``timeout`` (seconds, default the verifier's ``test_timeout``).

The patch is the response's last ```diff / ```patch block, else a bare unified diff starting at
the first ``diff --git`` or ``--- `` line, applied with ``git apply`` (fallback ``patch -p1``).

Scores: 1.0 when every FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes;
``regression_score`` when a PASS_TO_PASS test breaks; ``fail_score`` when only FAIL_TO_PASS tests
fail or the run's integrity checks fail; ``apply_fail_score`` when the patch does not apply;
``no_patch_score`` when the response has no diff (all default 0.0; M1 uses zero or negative
rewards for these). ``info``: ``status``, ``failed_fail_to_pass``, ``broken_pass_to_pass``,
``outcomes``, ``integrity`` (problems found), ``restored`` / ``removed`` (what the repair undid),
``queue_s``, ``sandbox_s``.

Threat model
------------
The patch is hostile and so is all code of the patched repository: it runs inside the test
process with the test runner's privileges (same uid as the supervisor's other children, same
process as pytest), at import, in fixtures, in ``atexit`` hooks and in processes it leaves
behind. It must not be able to make a test count as passed without making it pass. Defences
(programs in ``rewards/harness/``; each has a red-team test in ``tests/rewards/redteam/``):

* **The verdict is the supervisor's, not the test process's.** A separate trusted process
  (``swe_supervisor``) is the sandbox run's main process; it is non-dumpable (code of the same
  uid cannot ptrace it, read its memory or open its fds), keeps the run's nonce off disk, argv and
  environment, and writes the only line the host trusts. Reports come over a pipe it opened
  before any repository code ran, and it reads them only after killing every other process (so
  a process that outlives the test run cannot write after it) — no report file exists to rewrite.
* **Canaries.** The host appends three tests with random names and values to every test file it
  runs: one that passes, one plain function and one ``unittest.TestCase`` that fail. A global
  forgery (an ``atexit`` rewrite, a ``pytest_runtest_makereport`` hook, patched ``_pytest``
  internals, a monkeypatched ``unittest.TestCase.run``, ``os._exit(0)`` at import, a skip of
  everything) also turns the failing canaries, drops the end-of-session report, or changes the
  exit status (a run with failing canaries must exit 1); any of these voids the run.
* **The tests are the task's.** Everything the tests are made of is restored from the pristine
  tree after the patch and after the setup command, and what the patch may not add is removed
  (``rewards/harness/swe_tree.py``: conftest.py at any depth, ini/cfg/toml config anywhere,
  ``*.pth``, ``sitecustomize.py``, ``*.dist-info``/``*.egg-info`` entry points, bytecode,
  symlinks); pytest gets its config file with ``-c`` and ``--confcutdir`` at the repo root.
  The test tree is sealed (inode and ctime of every protected file and test directory) before
  the run and compared after it: rewriting or adding a test or conftest while the tests run
  voids the run (ctime cannot be set back without privileges).
* **Start-up.** The test process starts as ``python3 -I -B`` through a trusted runner: no
  ``PYTHON*`` variables, no user site, no current directory on the path at start-up, plug-in
  auto-loading off; only the reporter and plug-ins the task names with ``-p`` load.

Not defended (residual risk, stated): code in the test process can still forge the outcome of
one specific test it can recognise by name while leaving the canaries alone (the node ids are in
the process's argv); that needs knowledge of the task's hidden test names and of this harness.
Helper modules outside test directories that the tests import are not protected (a patch may
change them like any source file). Tests that legitimately write into their own test directory
void their run (use ``tmp_path``). The kernel is shared (see :mod:`sandboxes`).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shlex
import string
import tarfile
import threading
from pathlib import Path
from typing import Any

from rewards.base import RewardResult, register_verifier
from rewards.sandboxed import SandboxedVerifier

_DIFF_FENCE = re.compile(r"```[ \t]*(diff|patch)[^\n]*\n(.*?)```", re.DOTALL)
_DIFF_BODY = ("@@", "GIT binary patch", "rename from ", "new file mode ", "deleted file mode ")
_PYTEST_CMD = re.compile(r"^\s*(?:python3?\s+-m\s+pytest|pytest|py\.test)(?:\s|$)")


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
    if not any(mark in text for mark in _DIFF_BODY):
        return None
    return text if text.endswith("\n") else text + "\n"


def _name(rng: secrets.SystemRandom, prefix: str, k: int = 10) -> str:
    return prefix + "".join(rng.choice(string.ascii_lowercase) for _ in range(k))


def make_canaries(test_files: list[str]) -> tuple[dict, dict[str, str]]:
    """Random canary tests per test file: (spec for the supervisor, {node id: expected})."""
    rng = secrets.SystemRandom()
    spec, expected = {}, {}
    for f in test_files:
        a = rng.randrange(10**6, 10**9)
        c = {"tag": _name(rng, "", 8), "passing": _name(rng, "test_"), "failing": _name(rng, "test_"),
             "cls": "Test" + _name(rng, "").capitalize(), "method": _name(rng, "test_"),
             "a": a, "b": a + rng.randrange(1, 1000)}
        spec[f] = c
        expected[f"{f}::{c['passing']}"] = "passed"
        expected[f"{f}::{c['failing']}"] = "failed"
        expected[f"{f}::{c['cls']}::{c['method']}"] = "failed"
    return spec, expected


def outcome(phases: dict) -> str:
    """One test's outcome from its phase outcomes (pytest's setup/call/teardown reports)."""
    if not isinstance(phases, dict) or not all(isinstance(v, str) for v in phases.values()):
        return "malformed"
    if phases.get("setup") == "failed" or phases.get("teardown") == "failed":
        return "error"
    if "skipped" in phases.values():
        return "skipped"
    if phases.get("call") == "failed":
        return "failed"
    if [phases.get(k) for k in ("setup", "call", "teardown")] == ["passed"] * 3:
        return "passed"
    return "missing"


def judge(reports: str, ids: list[str], canaries: dict[str, str], exit_code: Any,
          tree_changed: list[str]) -> tuple[dict[str, str], list[str]]:
    """The outcome of each real test id, and the integrity problems of the run (any problem
    voids it). Pure: unit-tested with hand-made report streams."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    done = None
    for line in reports.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            problems.append("a report line is not JSON")
            continue
        if not isinstance(doc, dict):
            problems.append("a report line is not an object")
        elif "test" in doc:
            nid = str(doc["test"])
            if nid in seen:
                problems.append(f"{nid} reported twice")
            seen[nid] = outcome(doc.get("phases"))
        elif "done" in doc and done is None:
            done = doc["done"]
        elif "collect_error" not in doc:
            problems.append("an unknown or repeated report line")
    wanted = set(ids) | set(canaries)
    problems += [f"unexpected report for {n}" for n in sorted(set(seen) - wanted)]
    if done is None:
        problems.append("no end-of-session report (the test process ended early or was killed)")
    for nid, want in canaries.items():
        if seen.get(nid) != want:
            problems.append(f"canary {nid}: expected {want}, got {seen.get(nid, 'missing')}")
    if exit_code != 1 or done not in (None, 1):
        problems.append(f"exit status {exit_code} (session {done}); a run with failing canaries exits 1")
    problems += [f"test tree changed during the run: {p}" for p in tree_changed[:10]]
    return {i: seen.get(i, "missing") for i in ids}, problems


def pytest_args(task: dict) -> list[str]:
    """Extra pytest arguments of a task (``test_args``, or the arguments of ``test_command``)."""
    if "test_args" in task:
        args = task["test_args"]
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError("SWE task: 'test_args' must be a list of strings")
        return list(args)
    cmd = task.get("test_command")
    if not cmd:
        return []
    m = _PYTEST_CMD.match(cmd)
    if not m:
        raise ValueError(f"SWE task: test_command {cmd!r} must run pytest ('python3 -m pytest "
                         "ARGS'); the interpreter and its start-up are the verifier's")
    return shlex.split(cmd[m.end():])


@register_verifier("swe")
class SWEVerifier(SandboxedVerifier):
    """Scores a unified diff by the repository's FAIL_TO_PASS / PASS_TO_PASS tests."""

    program_names = ("proc", "swe_tree", "swe_supervisor", "swe_runner", "swe_report")

    def __init__(self, image: str | None = None, pool_size: int = 2,
                 max_concurrency: int | None = None, limits: Any = None,
                 test_timeout: float = 300.0, fail_score: float = 0.0,
                 regression_score: float = 0.0, apply_fail_score: float = 0.0,
                 no_patch_score: float = 0.0):
        super().__init__(image, pool_size, max_concurrency, limits, memory_mb=2048, pids=256,
                         workdir_mb=512, tmp_mb=64, cpus=1.0, timeout_s=test_timeout, max_runs=50)
        self.test_timeout = test_timeout
        self.fail_score, self.regression_score = fail_score, regression_score
        self.apply_fail_score, self.no_patch_score = apply_fail_score, no_patch_score
        self._tar_cache: dict[tuple, bytes] = {}
        self._tar_lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_tar_lock")
        return state | {"_tar_cache": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tar_lock = threading.Lock()

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
        ids = f2p + p2p
        spec, canaries = make_canaries(sorted({i.split("::")[0] for i in ids}))
        timeout = float(task.get("timeout", self.test_timeout))
        payload = {"patch": patch, "ids": ids, "canaries": spec, "canary_ids": list(canaries),
                   "test_args": pytest_args(task), "setup": task.get("setup"), "timeout": timeout,
                   "env": {str(k): str(v) for k, v in (task.get("env") or {}).items()}}
        verdict, info = self.run_harness("swe_supervisor", payload, timeout + 30,
                                         extra_files={"repo.tar.gz": self._repo_tarball(task["repo"])})
        if verdict is None:
            info["status"] = "sandbox_failed"
            return RewardResult(self.fail_score, False, info)
        info["status"] = verdict.get("status")
        info["log"] = str(verdict.get("log", ""))[-1500:]
        if verdict.get("status") == "bad_task":
            raise ValueError(f"SWE task is broken: {info['log']}")
        if verdict.get("status") == "apply_failed":
            return RewardResult(self.apply_fail_score, False, info)
        if verdict.get("status") != "ran":
            return RewardResult(self.fail_score, False, info)
        outcomes, problems = judge(str(verdict.get("reports", "")), ids, canaries,
                                   verdict.get("exit_code"), list(verdict.get("tree_changed", [])))
        failed_f2p = [t for t in f2p if outcomes[t] != "passed"]
        broken_p2p = [t for t in p2p if outcomes[t] != "passed"]
        info.update(outcomes=outcomes, integrity=problems, failed_fail_to_pass=failed_f2p,
                    broken_pass_to_pass=broken_p2p, timed_out=verdict.get("timed_out", False),
                    restored=verdict.get("restored", []), removed=verdict.get("removed", {}),
                    applied_with=verdict.get("applied_with"))
        if problems:
            info["status"] = "integrity_failed"
            return RewardResult(self.fail_score, False, info)
        if not failed_f2p and not broken_p2p:
            return RewardResult(1.0, True, info)
        return RewardResult(self.regression_score if broken_p2p else self.fail_score, False, info)


__all__ = ["SWEVerifier", "extract_patch", "judge", "make_canaries", "outcome", "pytest_args"]
