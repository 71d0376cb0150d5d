"""A small persistent pool of worker processes with a hard per-call deadline.

Each call goes to one idle worker over a pipe. The worker interrupts itself at 80% of the
deadline (``"soft_timeout"``); if the answer is still not back at the deadline, the worker is
killed (SIGKILL: a sympy loop in C code ignores everything else) and replaced, and the call
returns ``(None, "timeout")``. Workers are forked from a forkserver that has already imported
sympy and the parser, so a replacement is ready in tens of milliseconds, and forking never copies
the threads of the calling process (Ray, thread pools).

``compare`` returns ``(True | False, reason)`` for a judgement and ``(None, reason)`` for none:
``"timeout"``/``"soft_timeout"``/``"memory"`` (this answer hit a limit) or ``"error: ..."`` (a
worker died or failed to start, the backend did not load, the pool is closed). Callers must not
cache a ``None``.

Lifecycle: ``close()`` kills every worker and leaves none behind (idempotent; later calls answer
``"error: pool closed"``). The process-wide pool (:func:`default_pool`) is shared by leases:
each default-configured ``MathVerifier`` takes one (:func:`lease_default_pool`) and gives it back
in its ``close()``; the last one back closes the pool, and the next use starts a fresh one.
multiprocessing's forkserver itself (one per interpreter, no workers of ours) lives until exit.

What this isolates: CPU time and memory (RLIMIT_AS) of one comparison, and crashes of the
parsing libraries. What it does not: it is not a security sandbox - nothing here runs model text
as code in the first place (see ``_worker.harden``).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import multiprocessing.spawn as mp_spawn
import os
import queue
import threading

from rewards.math import _worker

_START_LOCK = threading.Lock()


def _start_without_main(proc) -> None:
    """Start ``proc`` without re-importing the caller's ``__main__`` in the child.

    multiprocessing's spawn/forkserver children import the parent's main script, which breaks
    (or re-runs) scripts that lack an ``if __name__ == "__main__"`` guard. The worker needs
    nothing from ``__main__``, so those keys are dropped from its preparation data.
    """
    with _START_LOCK:
        original = mp_spawn.get_preparation_data

        def prep(name):
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        mp_spawn.get_preparation_data = prep
        try:
            proc.start()
        finally:
            mp_spawn.get_preparation_data = original


class _Handle:
    def __init__(self, ctx, max_bytes: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker.serve, args=(child, max_bytes), daemon=True)
        _start_without_main(self.proc)
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        if not self.ready and self.conn.poll(timeout):
            try:
                self.ready = self.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                self.ready = False
        return self.ready

    def ask(self, msg, timeout: float):
        """Send ``msg``; the reply, or None when it is not back within ``timeout``.
        Raises EOFError / OSError when the worker is gone."""
        self.conn.send(msg)
        return self.conn.recv() if self.conn.poll(timeout) else None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(1.0)
        except Exception:
            pass
        self.conn.close()


class WorkerPool:
    """``pool.compare(gold, pred, timeout)`` -> (verdict | None, reason); thread-safe.

    ``start_method``: "forkserver" (default: warm, fast restarts) or "spawn" (a fresh interpreter
    per worker, with the caller's ``sys.path``; slower).
    """

    def __init__(self, size: int = 2, max_bytes: int = 2 << 30, start_timeout: float = 60.0,
                 start_method: str = "forkserver"):
        self.size, self.max_bytes, self.start_timeout = size, max_bytes, start_timeout
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            try:
                self._ctx.set_forkserver_preload(["rewards.math._warm"])
            except Exception:
                pass
        # LIFO: a sequential caller keeps reusing the same worker, whose parser caches are warm
        self._idle: queue.LifoQueue[_Handle] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._all: list[_Handle] = []
        self._closed = False
        self.restarts = 0
        for _ in range(size):
            self._spawn()
        atexit.register(self.close)

    @property
    def closed(self) -> bool:
        return self._closed

    def pids(self) -> list[int]:
        """Process ids of the live workers (tests use this to check that close() kills them)."""
        with self._lock:
            return [h.proc.pid for h in self._all if h.proc.pid is not None]

    def _spawn(self) -> None:
        with self._lock:
            if self._closed:
                return
            h = _Handle(self._ctx, self.max_bytes)
            self._all.append(h)
        self._idle.put(h)

    def _drop(self, h: _Handle) -> None:
        h.kill()
        with self._lock:
            if h in self._all:
                self._all.remove(h)

    def _retire(self, h: _Handle) -> None:
        self._drop(h)
        self.restarts += 1
        self._spawn()

    def compare(self, gold: str, pred: str, timeout: float) -> tuple[bool | None, str]:
        if self._closed:
            return None, "error: pool closed"
        try:
            h = self._idle.get(timeout=self.start_timeout)
        except queue.Empty:
            return None, "error: no free worker"
        if self._closed:
            self._drop(h)
            return None, "error: pool closed"
        if not h.wait_ready(self.start_timeout):
            self._retire(h)
            return None, "error: worker failed to start"
        try:
            result = h.ask((gold, pred, 0.8 * timeout), timeout)
        except (EOFError, OSError):
            self._retire(h)
            return None, "error: worker died"
        if result is None:
            self._retire(h)
            return None, "timeout"
        self._idle.put(h)
        return result

    def _take_idle(self) -> list[_Handle]:
        handles = []
        while True:
            try:
                handles.append(self._idle.get_nowait())
            except queue.Empty:
                return handles

    def recycle(self) -> None:
        """Replace every idle worker with a fresh one forked from the warm forkserver (benchmarks
        use this so that no comparison profits from sympy caches filled by an earlier pass)."""
        for h in self._take_idle():
            self._drop(h)
            self._spawn()
        for h in self._take_idle():
            h.wait_ready(self.start_timeout)
            self._idle.put(h)

    def close(self) -> None:
        """Kill every worker (idempotent). Calls in flight return an error."""
        with self._lock:
            self._closed = True
            handles, self._all = list(self._all), []
        for h in handles:
            try:
                h.conn.send(None)
            except Exception:
                pass
            h.kill()
        atexit.unregister(self.close)


_POOL: WorkerPool | None = None
_LEASES = 0
_POOL_LOCK = threading.Lock()


def pool_size() -> int:
    """Workers in the process-wide pool: ``M1RL_MATH_WORKERS``, default min(4, cpus)."""
    return max(1, int(os.environ.get("M1RL_MATH_WORKERS", min(4, os.cpu_count() or 1))))


def default_pool() -> WorkerPool:
    """The process-wide pool, started on first use (symbolic comparisons only)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.closed:
            _POOL = WorkerPool(size=pool_size())
        return _POOL


def lease_default_pool() -> None:
    """Count one more user of the process-wide pool (it still starts on first use)."""
    global _LEASES
    with _POOL_LOCK:
        _LEASES += 1


def release_default_pool() -> None:
    """Give a lease back; the last one back closes the process-wide pool."""
    global _LEASES, _POOL
    with _POOL_LOCK:
        _LEASES = max(0, _LEASES - 1)
        pool = _POOL if _LEASES == 0 else None
        if pool is not None:
            _POOL = None
    if pool is not None:
        pool.close()
