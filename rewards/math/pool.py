"""A small persistent pool of worker processes with a hard per-call deadline.

Each call goes to one idle worker over a pipe. If the answer is not back by the deadline, the
worker is killed (SIGKILL: a sympy loop in C code ignores everything else) and replaced, and the
call returns ``(False, "timeout")``. Workers are forked from a forkserver that has already
imported sympy and the parser, so a replacement is ready in tens of milliseconds, and forking
never copies the threads of the calling process (Ray, thread pools).

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

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(1.0)
        except Exception:
            pass
        self.conn.close()


class WorkerPool:
    """``pool.compare(gold, pred, timeout)`` -> (equivalent, reason); thread-safe."""

    def __init__(self, size: int = 2, max_bytes: int = 2 << 30, start_timeout: float = 60.0):
        self.size, self.max_bytes, self.start_timeout = size, max_bytes, start_timeout
        self._ctx = mp.get_context("forkserver")
        try:
            self._ctx.set_forkserver_preload(["rewards.math._warm"])
        except Exception:
            pass
        # LIFO: a sequential caller keeps reusing the same worker, whose parser caches are warm
        self._idle: queue.LifoQueue[_Handle] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._all: list[_Handle] = []
        self.restarts = 0
        for _ in range(size):
            self._spawn()
        atexit.register(self.close)

    def _spawn(self) -> None:
        h = _Handle(self._ctx, self.max_bytes)
        with self._lock:
            self._all.append(h)
        self._idle.put(h)

    def _retire(self, h: _Handle) -> None:
        h.kill()
        with self._lock:
            if h in self._all:
                self._all.remove(h)
        self.restarts += 1
        self._spawn()

    def compare(self, gold: str, pred: str, timeout: float) -> tuple[bool, str]:
        try:
            h = self._idle.get(timeout=self.start_timeout)
        except queue.Empty:
            return False, "timeout: no free worker"
        if not h.wait_ready(self.start_timeout):
            self._retire(h)
            return False, "error: worker failed to start"
        soft = max(1, int(timeout) - 1)  # SIGALRM inside the worker first; the kill is the backstop
        try:
            h.conn.send((gold, pred, soft))
            if h.conn.poll(timeout):
                result = h.conn.recv()
                self._idle.put(h)
                return result
        except (EOFError, OSError, BrokenPipeError):
            self._retire(h)
            return False, "error: worker died"
        self._retire(h)
        return False, "timeout"

    def recycle(self) -> None:
        """Replace every idle worker with a fresh one forked from the warm forkserver (benchmarks
        use this so that no comparison profits from sympy caches filled by an earlier pass)."""
        handles = []
        while True:
            try:
                handles.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for h in handles:
            h.kill()
            with self._lock:
                if h in self._all:
                    self._all.remove(h)
            self._spawn()
        fresh = []
        while True:
            try:
                fresh.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for h in fresh:
            h.wait_ready(self.start_timeout)
            self._idle.put(h)

    def clear_caches(self) -> None:
        """Empty each worker's parse cache (benchmarks use this to time cold comparisons)."""
        handles = []
        while True:
            try:
                handles.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for h in handles:
            try:
                if h.wait_ready(self.start_timeout):
                    h.conn.send("clear")
                    if h.conn.poll(self.start_timeout):
                        h.conn.recv()
            except (EOFError, OSError):
                pass
            self._idle.put(h)

    def close(self) -> None:
        with self._lock:
            handles, self._all = list(self._all), []
        for h in handles:
            try:
                h.conn.send(None)
            except Exception:
                pass
            h.kill()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def pool_size() -> int:
    """Workers in the process-wide pool: ``M1RL_MATH_WORKERS``, default min(4, cpus)."""
    return max(1, int(os.environ.get("M1RL_MATH_WORKERS", min(4, os.cpu_count() or 1))))


def default_pool() -> WorkerPool:
    """The process-wide pool, started on first use (symbolic comparisons only)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool(size=pool_size())
        return _POOL
