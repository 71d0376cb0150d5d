"""Process helpers for the trusted side of a sandboxed harness.

Inside one sandbox run every process shares one uid, so the trusted side protects itself by being
non-dumpable (same-uid code can then neither ptrace it nor open its ``/proc/<pid>/mem`` or
``/proc/<pid>/fd``), and kills every other process it may signal before it trusts any result
(``kill(-1)`` spares only PID 1, the sandbox agent, and the caller).
"""

import ctypes
import os
import select
import signal
import time


def non_dumpable():
    """PR_SET_DUMPABLE = 0 for this process (raises if the kernel refuses)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def kill_others(limit_s=5.0):
    """SIGKILL every process we may signal except PID 1 and ourselves (processes forked in the
    meantime included: the sweep repeats until no child is left), and reap our children.
    Returns {pid: wait status} of the children it reaped."""
    deadline = time.monotonic() + limit_s
    reaped = {}
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped[pid] = status
        else:
            if time.monotonic() > deadline:
                raise RuntimeError("children survive SIGKILL")
            time.sleep(0.005)


def finish(p):
    """Kill every other process; the exit code of ``p`` (a ``subprocess.Popen``): its own if it
    had ended, -9 if the sweep killed it."""
    rc = p.poll()
    reaped = kill_others()
    if rc is None:
        status = reaped.get(p.pid)
        rc = os.waitstatus_to_exitcode(status) if status is not None else p.wait()
        p.returncode = rc
    return rc


def pump(fds, caps, deadline, stop=None):
    """Read ``fds`` (a list of readable fds) into byte buffers until each hits EOF, the
    ``deadline`` (monotonic seconds) passes, or ``stop()`` returns True and no data is pending.
    ``caps[i]`` bounds what is kept of fd i (the rest is read and dropped).
    Returns (buffers, timed_out)."""
    bufs = [bytearray() for _ in fds]
    open_fds = set(range(len(fds)))
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return bufs, True
        ready, _, _ = select.select([fds[i] for i in open_fds], [], [], min(left, 0.2))
        for i in list(open_fds):
            if fds[i] not in ready:
                continue
            chunk = os.read(fds[i], 65536)
            if not chunk:
                open_fds.discard(i)
            elif len(bufs[i]) < caps[i]:
                bufs[i] += chunk[: caps[i] - len(bufs[i])]
        if not ready and stop is not None and stop():
            break
    return bufs, False


def drain(fd, cap, limit_s=1.0):
    """What is left in ``fd`` once its writers are dead (read to EOF, at most ``cap`` kept)."""
    (buf,), _ = pump([fd], [cap], time.monotonic() + limit_s)
    return bytes(buf)
