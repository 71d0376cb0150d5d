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
* assert-based (HumanEval style): ``{"test_code": "def check(candidate): ...", "entry_point": "f",
  "context": "..."}``; ``context`` (optional, trusted dataset code such as the problem's prompt)
  runs in the checker before ``test_code``, for checks that call helpers it defines.

**Threat model.** The program is hostile: it runs with the sandbox's uid, may read everything in
the work dir, fork, signal, exhaust memory, and print anything. It must not get a pass without
solving the task. The decision is never read from anything the program writes:

* stdin/stdout: the expected outputs never enter the sandbox; the host compares the captured
  output.
* asserts: ``check`` runs in a *checker* process (``rewards/harness/code_checker.py``) that
  never executes the program. The program runs in a separate fresh process
  (``code_candidate.py``) that only answers calls over a pipe with *plain data* (exact built-in
  types, ``rewards/harness/codec.py``), so ``check`` compares genuine built-in values: an object
  whose ``__eq__`` returns True cannot cross. Of an exception only the name crosses, and only a
  fixed list (``REPLAYED``: ValueError, TypeError, KeyError, ...) is re-raised in the checker;
  anything else (StopIteration ending a ``map``/``all`` loop early, SystemExit, GeneratorExit,
  AssertionError, ...) becomes a candidate error that no check can catch, score 0. A returned
  NaN anywhere in the value is a candidate error (a check written ``if abs(got - want) > tol:
  raise`` would pass it); infinities cross unchanged (they fail such a check, and compare equal
  only to an expected infinity).
* the checker is non-dumpable (same-uid code cannot ptrace it, read its memory or open its fds),
  imports everything before the program starts, keeps the tests off disk and argv, and kills every
  other process before it reports. Exiting early, ``atexit`` hooks, patched ``sys.excepthook``,
  printed "success" markers, forged verdict lines and edits to files in the work dir change
  nothing: the host only accepts the checker's JSON line carrying the per-run random nonce it
  sent on stdin.

Not defended: a check (dataset code) that is itself wrong or catches everything; timing side
channels; a kernel exploit (see :mod:`sandboxes` for what the container does not isolate).
A program that breaks its own run (kills the checker, exhausts memory, hangs) scores 0 with the
reason; a backend that is down (no Docker engine, missing image) makes the sample unjudged.

Options: ``image``, ``pool_size`` (containers), ``max_concurrency`` (parallel verifications of a
batch, default ``pool_size``), ``limits`` (:class:`sandboxes.Limits` or a dict of its fields),
``test_timeout`` (s per stdin/stdout test, default 5), ``check_timeout`` (s for a ``check``,
default 20), ``partial`` (score = fraction passed instead of all-or-nothing),
``stop_after_timeout`` (skip the remaining stdin tests after one times out, default True unless
``partial``). ``info`` has ``passed``, ``total``, ``failures`` (first 5), ``queue_s`` (seconds
waiting for a concurrency slot and a free container) and ``sandbox_s`` (seconds in the sandbox).
"""

from __future__ import annotations

import re
from typing import Any

from rewards.base import RewardResult, register_verifier
from rewards.sandboxed import SandboxedVerifier

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


@register_verifier("code")
class CodeVerifier(SandboxedVerifier):
    """Scores a response by running its last python block against the task's tests."""

    program_names = ("codec", "proc", "code_checker", "code_candidate")

    def __init__(self, image: str | None = None, pool_size: int = 4,
                 max_concurrency: int | None = None, limits: Any = None,
                 test_timeout: float = 5.0, check_timeout: float = 20.0, partial: bool = False,
                 stop_after_timeout: bool | None = None, max_output: int = 1 << 20):
        super().__init__(image, pool_size, max_concurrency, limits,
                         memory_mb=512, pids=64, timeout_s=30.0)
        self.test_timeout, self.check_timeout = test_timeout, check_timeout
        self.partial = partial
        self.stop_after_timeout = (not partial) if stop_after_timeout is None else stop_after_timeout
        self.max_output = max_output

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
        verdict, info = self.run_harness("code_checker", payload,
                                         self.test_timeout * len(inputs) + 10, max_output=self.max_output)
        if verdict is None:
            return self._finish([False] * len(inputs), len(inputs), [], info)
        results = verdict.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ValueError("malformed verdict from the checker")
        passed, failures = [], []
        for i, expected in enumerate(outputs):
            if i >= len(results):
                passed.append(False)
                failures.append({"test": i, "reason": "not run (an earlier test timed out)"})
                continue
            r = results[i]
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
                   "entry_point": tests["entry_point"], "context": tests.get("context") or "",
                   "check_timeout": self.check_timeout}
        verdict, info = self.run_harness("code_checker", payload, self.check_timeout + 10,
                                         max_output=self.max_output)
        results = verdict.get("results") if verdict is not None else None
        if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
            return self._finish([False], 1, [], info)
        r = results[0]
        failures = [] if r.get("passed") is True else [{"test": 0, "reason": str(r.get("error"))}]
        return self._finish([r.get("passed") is True], 1, failures, info)


__all__ = ["CodeVerifier", "extract_program", "normalize_output"]
