# ruff: noqa: UP031  (runs on the image's python3, kept to 3.7-compatible code)
"""In-container agent: PID 1 of every warm sandbox container (stdlib only, Python 3.7+).

The host starts the container with ``docker run -i`` and a two-line bootstrap that reads this
file's source from stdin; afterwards stdin/stdout carry framed JSON messages
(``<length>\\n<json bytes>``), one request and one reply per run. Why PID 1 and not ``docker exec``:

* no exec per run (runc exec costs tens of ms of CPU); a run is one fork+exec inside the container;
* PID 1 of a pid namespace cannot be killed or stopped from inside it, and the agent makes itself
  non-dumpable, so code of the same uid can neither ptrace it nor open ``/proc/1/fd/*`` to write
  fake replies;
* when the host process dies, the attach stream closes, the agent reads EOF and exits, and the
  container (``--rm``) goes away: nothing leaks.

Each run: wipe the writable dirs, write the files, start the command in ``/work`` with a scrubbed
environment, read stdout/stderr through pipes keeping a capped prefix (the rest is drained and
counted, never buffered, never sent to Docker), enforce the timeout, then ``kill(-1, SIGKILL)``
every other process (all run as the same uid; PID 1 is exempt), reap, reply, wipe.
"""

import base64
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

WRITABLE_DIRS = ("/work", "/tmp", "/dev/shm")
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def _harden():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except Exception:
        pass
    # PID 1 only receives signals it handles; keep the handler set empty (Python sets SIGINT).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _oom_count():
    for path in OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


def _kill_all():
    """SIGKILL every process we may signal (all run as our uid) and reap; PID 1 is exempt."""
    for _ in range(50):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass
        _reap()
        if not _others_alive():
            return 0
        time.sleep(0.01)
    return len(_others_alive())


REAPED = {}  # pid -> wait status of children reaped by _reap (the run's main process included)


def _reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        REAPED[pid] = status


def _others_alive():
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open("/proc/%s/stat" % name) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                out.append(int(name))
    return out


def _wipe():
    for d in WRITABLE_DIRS:
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            p = os.path.join(d, name)
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    for root, dirs, _ in os.walk(p):
                        for x in dirs:
                            try:
                                os.chmod(os.path.join(root, x), 0o700)
                            except OSError:
                                pass
                    os.chmod(p, 0o700)
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
            except OSError:
                pass


def _write_files(files):
    for rel, spec in files.items():
        path = os.path.normpath(os.path.join("/work", rel))
        if not path.startswith("/work/"):
            raise ValueError("file path escapes /work: %r" % rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(spec["data"]))
        os.chmod(path, spec.get("mode", 0o644))


def _run(req):
    _kill_all()
    _wipe()
    _write_files(req.get("files") or {})
    cap = int(req.get("max_output", 65536))
    timeout = float(req.get("timeout", 10.0))
    env = dict(BASE_ENV)
    env.update(req.get("env") or {})
    cmd = req["cmd"]
    stdin_data = base64.b64decode(req.get("stdin") or "")
    # stdin comes from an unlinked tmpfs file: no writer thread, no pipe that can block us
    stdin_path = "/tmp/.stdin-%d" % os.getpid()
    with open(stdin_path, "wb") as f:
        f.write(stdin_data)
    stdin_r = open(stdin_path, "rb")
    os.unlink(stdin_path)
    oom_before = _oom_count()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdin=stdin_r,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/work",
                                env=env, close_fds=True, start_new_session=True)
    except OSError as exc:
        stdin_r.close()
        return {"exit_code": 127, "stdout": "", "stderr": base64.b64encode(
            ("cannot start command: %s" % exc).encode()).decode(), "timed_out": False,
            "oom_killed": False, "duration": 0.0, "stdout_bytes": 0, "stderr_bytes": 0}
    stdin_r.close()
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    totals = dict.fromkeys(bufs, 0)
    open_fds = set(bufs)
    deadline = t0 + timeout
    timed_out = False
    exited_at = None
    while open_fds:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.05:
            break  # main process gone; leftovers holding the pipes are killed below
        if now >= deadline:
            timed_out = proc.poll() is None
            break
        wait = min(deadline - now, 0.05 if exited_at is not None else 0.5)
        ready, _, _ = select.select(list(open_fds), [], [], wait)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            totals[fd] += len(chunk)
            room = cap - len(bufs[fd])
            if room > 0:
                bufs[fd] += chunk[:room]
    duration = time.monotonic() - t0
    proc.poll()  # collect the main process's status before the sweep reaps everything
    _kill_all()
    # drain what is left in the pipes (writers are dead now, so this ends)
    for fd in list(open_fds):
        while True:
            r, _, _ = select.select([fd], [], [], 0.2)
            if not r:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            totals[fd] += len(chunk)
            room = cap - len(bufs[fd])
            if room > 0:
                bufs[fd] += chunk[:room]
    if proc.returncode is None and proc.pid in REAPED:
        proc.returncode = os.waitstatus_to_exitcode(REAPED.pop(proc.pid))
    rc = proc.wait()
    REAPED.clear()
    proc.stdout.close()
    proc.stderr.close()
    oom_after = _oom_count()
    oom = (oom_before is not None and oom_after is not None and oom_after > oom_before)
    keys = list(bufs)  # [stdout fd, stderr fd] in insertion order
    return {
        "exit_code": rc,
        "stdout": base64.b64encode(bytes(bufs[keys[0]])).decode(),
        "stderr": base64.b64encode(bytes(bufs[keys[1]])).decode(),
        "stdout_bytes": totals[keys[0]],
        "stderr_bytes": totals[keys[1]],
        "timed_out": timed_out,
        "oom_killed": bool(oom),
        "duration": duration,
    }


def _read_msg(stream):
    header = stream.readline()
    if not header:
        return None
    n = int(header)
    data = stream.read(n)
    if len(data) != n:
        return None
    return json.loads(data)


def _send(stream, obj):
    data = json.dumps(obj).encode()
    stream.write(b"%d\n" % len(data))
    stream.write(data)
    stream.flush()


def main():
    _harden()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    _wipe()
    _send(out, {"ready": True, "uid": os.getuid(), "pid": os.getpid(),
                "oom_counter": _oom_count() is not None})
    while True:
        req = _read_msg(inp)
        if req is None:
            break  # host went away: exit, the container is removed (--rm)
        try:
            reply = _run(req)
        except Exception as exc:  # report, keep serving
            reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
        reply["leftover"] = _kill_all()
        _send(out, reply)
        _wipe()
    _kill_all()


if __name__ == "__main__":
    main()
