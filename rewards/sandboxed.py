"""What the sandboxed verifiers (``code``, ``swe``) share: a pool of warm containers started on
first use, limits, a batch that runs samples concurrently and reports queueing, the one channel
the host trusts (:func:`read_verdict`), a backend preflight and ``close()``.

A harness is a program of :mod:`rewards.harness` run as ``python3 -I`` in a container of the
pool; it answers with one JSON line carrying the per-run random nonce the host sent on its
stdin, and the host trusts nothing else the run printed.

Failure classes (what a caller sees):

* the backend is down (no Docker engine, image missing, no container can start): the pool
  raises, the sample is *unjudged* (``correct=None`` with ``info["error"]``; the run counts it and
  stops past its error-rate threshold) — never a silent zero;
* the candidate broke its own run (killed the harness, ran out of memory, hung the container):
  a judged failure, score 0 with the reason, because a policy can cause it on purpose.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from rewards.base import BaseVerifier, RewardResult, VerifierUnavailable, safe_call

_POOLS: dict[tuple, list] = {}  # (image, size, limits) -> [pool, users]
_POOLS_LOCK = threading.Lock()


def as_limits(limits: Any, **defaults: Any) -> Any:
    """A :class:`sandboxes.Limits` from one, or from a dict of its fields over ``defaults``."""
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


def docker_problem(image: str) -> str | None:
    """Why sandboxes of ``image`` cannot start here, or None."""
    try:
        r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "the docker CLI is not installed (run scripts/ensure_docker.sh as root)"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers `docker info` ({tail}); start one with scripts/ensure_docker.sh"
    r = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30)
    if r.returncode != 0:
        return f"sandbox image {image} does not exist; build it with `python -m sandboxes build-image`"
    return None


class SandboxedVerifier(BaseVerifier):
    """Base of the verifiers whose harness runs in a container; subclasses implement
    ``score(response, task)`` with :meth:`run_harness`."""

    program_names: tuple[str, ...] = ()  # modules of rewards.harness shipped with every run

    def __init__(self, image: str | None, pool_size: int, max_concurrency: int | None,
                 limits: Any, **limit_defaults: Any):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.image, self.pool_size = image, pool_size
        self.max_workers = max_concurrency or pool_size
        self.limits = as_limits(limits, **limit_defaults)
        self._pool: Any = None
        self._pool_key: tuple | None = None

    def __getstate__(self) -> dict:  # picklable for Ray: the pool is rebuilt where it is used
        return {k: v for k, v in self.__dict__.items()} | {"_pool": None, "_pool_key": None}

    # ---- the pool ----------------------------------------------------------------------
    @property
    def pool(self) -> Any:
        """A pool shared by every verifier of this process with the same image, size and limits
        (started on first use; closed when its last user closes)."""
        if self._pool is None:
            from sandboxes import SandboxPool

            key = (self.image, self.pool_size, self.limits)
            with _POOLS_LOCK:
                entry = _POOLS.get(key)
                if entry is None or entry[0]._closed:
                    entry = _POOLS[key] = [SandboxPool(self.image, size=self.pool_size,
                                                       limits=self.limits), 0]
                entry[1] += 1
                self._pool, self._pool_key = entry[0], key
        return self._pool

    def close(self) -> None:
        """Release this verifier's share of its pool; the last user removes the containers."""
        pool, key = self._pool, self._pool_key
        self._pool = self._pool_key = None
        if pool is None:
            return
        with _POOLS_LOCK:
            entry = _POOLS.get(key)
            last = entry is not None and entry[0] is pool and entry[1] <= 1
            if entry is not None and entry[0] is pool:
                entry[1] -= 1
                if last:
                    del _POOLS[key]
        if last:
            pool.close()

    def preflight(self) -> None:
        """Docker answers, the image exists, and a container of the pool runs Python."""
        from sandboxes import SandboxError, default_image

        image = self.image or default_image()
        problem = docker_problem(image)
        if problem is None:
            try:
                r = self.pool.run(["python3", "-I", "-c", "print(6 * 7)"], timeout=30)
                if r.exit_code != 0 or r.stdout != "42\n":
                    problem = f"a sandbox of {image} cannot run python3: {r.error or r.stderr[-300:]}"
            except SandboxError as exc:
                problem = str(exc)
        if problem:
            raise VerifierUnavailable(f"{type(self).__name__}: {problem}")

    # ---- running -----------------------------------------------------------------------
    def run_harness(self, program: str, payload: Mapping[str, Any], timeout: float,
                    extra_files: Mapping[str, Any] | None = None, max_output: int = 1 << 20
                    ) -> tuple[dict | None, dict]:
        """Run harness ``program`` with ``payload`` (plus a fresh nonce) on its stdin; returns
        (the nonce-carrying verdict or None, info with queue/sandbox times and any failure)."""
        from rewards import harness

        nonce = secrets.token_hex(16)
        files = {**harness.files(*self.program_names), **(extra_files or {})}
        r = self.pool.run(["python3", "-I", "-B", f"{harness.DIR}/{program}.py"], files=files,
                          stdin=json.dumps(dict(payload, nonce=nonce)), timeout=timeout,
                          max_output=max_output)
        info: dict[str, Any] = {"queue_s": round(r.queue_s, 4), "sandbox_s": round(r.duration, 4)}
        verdict = read_verdict(r.stdout, nonce)
        if verdict is None:
            info["sandbox_failure"] = (r.error or "no verdict from the harness (killed, timed out "
                                       f"or crashed): exit {r.exit_code}, timed_out={r.timed_out}, "
                                       f"oom={r.oom_killed}, stderr={r.stderr[-300:]!r}")
        return verdict, info

    def batch(self, responses: Sequence[str], tasks: Sequence[dict]) -> list[RewardResult]:
        """Score concurrently (``max_concurrency`` at once); ``info["queue_s"]`` adds the wait for
        a concurrency slot to the wait for a free container."""
        if len(responses) != len(tasks):
            raise ValueError(f"batch: {len(responses)} responses but {len(tasks)} tasks")
        t_submit = time.monotonic()

        def one(rt: tuple[str, dict]) -> RewardResult:
            waited = time.monotonic() - t_submit
            res = safe_call(self.score, *rt)
            res.info["queue_s"] = round(res.info.get("queue_s", 0.0) + waited, 4)
            return res

        with cf.ThreadPoolExecutor(max(1, self.max_workers), thread_name_prefix="sandboxed") as ex:
            return list(ex.map(one, zip(responses, tasks, strict=True)))
