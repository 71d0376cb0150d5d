"""A pool of warm, locked-down containers that run commands.

::

    from sandboxes import SandboxPool, Limits
    with SandboxPool(size=4, limits=Limits(memory_mb=256)) as pool:
        r = pool.run("python3 main.py", files={"main.py": "print(input()[::-1])"}, stdin="abc")
        assert r.stdout == "cba\\n" and r.exit_code == 0

Each container is ``docker run -i --rm`` with the flags of :func:`docker_run_args` and the agent
of :mod:`sandboxes.agent` as PID 1; a run is one framed request/reply over the attach stream.
See the package docstring for what is isolated and what is not.
"""

from __future__ import annotations

import atexit
import base64
import concurrent.futures as cf
import json
import os
import queue
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxes.image import SANDBOX_UID, default_image

LABEL = "m1rl.sandbox"
OWNER_LABEL = "m1rl.sandbox.owner"
POOL_LABEL = "m1rl.sandbox.pool"
_AGENT_SRC = (Path(__file__).parent / "agent.py").read_bytes()
_BOOT = ("import sys;b=sys.stdin.buffer;n=int(b.readline());"
         "exec(compile(b.read(n),'m1rl-agent','exec'))")


@dataclass(frozen=True)
class Limits:
    """Per-container resource limits (every run in the container shares them)."""

    memory_mb: int = 512
    """Memory cap incl. tmpfs pages; swap is capped to the same value (no swap)."""
    cpus: float = 1.0
    """CPU cap (CFS quota), in cores."""
    pids: int = 128
    """Max processes+threads in the container (fork bombs stop here)."""
    workdir_mb: int = 64
    """Size of the writable ``/work`` tmpfs (the run's cwd)."""
    tmp_mb: int = 16
    """Size of the writable ``/tmp`` tmpfs (and of ``/dev/shm``)."""
    output_bytes: int = 1 << 20
    """Per-stream cap on stdout/stderr kept from a run (the rest is drained and counted)."""
    timeout_s: float = 10.0
    """Default wall-clock limit of a run."""
    max_runs: int = 500
    """Recycle a container after this many runs."""
    nofile: int = 1024
    """RLIMIT_NOFILE of processes in the container."""

    def __post_init__(self) -> None:
        checks = [("memory_mb", self.memory_mb >= 32), ("cpus", 0.01 <= self.cpus <= 64),
                  ("pids", self.pids >= 8), ("workdir_mb", self.workdir_mb >= 1),
                  ("tmp_mb", self.tmp_mb >= 1), ("output_bytes", self.output_bytes >= 0),
                  ("timeout_s", self.timeout_s > 0), ("max_runs", self.max_runs >= 1),
                  ("nofile", self.nofile >= 16)]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"Limits: invalid value for {', '.join(bad)}: {self}")


@dataclass
class ExecResult:
    """Outcome of one run. ``exit_code`` is the status, or ``-N`` when killed by signal N."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    oom_killed: bool
    duration: float
    """Seconds the command ran (measured inside the container)."""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    queue_s: float = 0.0
    """Seconds spent waiting for a free container."""
    error: str | None = None
    """Set when the sandbox itself failed (agent died, container killed from outside, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)


def docker_run_args(limits: Limits, name: str, labels: Mapping[str, str]) -> list[str]:
    """The ``docker run`` flags of a sandbox container (the containment, in one place)."""
    args = ["--name", name, "--rm", "-i", "--log-driver", "none",
            "--network", "none",
            "--read-only",
            "--tmpfs", f"/work:rw,exec,nosuid,nodev,size={limits.workdir_mb}m,mode=1777",
            "--tmpfs", f"/tmp:rw,noexec,nosuid,nodev,size={limits.tmp_mb}m,mode=1777",
            "--shm-size", f"{limits.tmp_mb}m",
            "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m",
            "--pids-limit", str(limits.pids),
            "--cpus", str(limits.cpus),
            "--ulimit", f"nofile={limits.nofile}:{limits.nofile}",
            "--ulimit", "core=0:0",
            "--hostname", "sandbox", "--workdir", "/work",
            "--env", "PATH=/usr/local/bin:/usr/bin:/bin"]
    for k, v in labels.items():
        args += ["--label", f"{k}={v}"]
    return args


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_token() -> str:
    return f"{_boot_id()}:{os.getpid()}:{_proc_start(os.getpid())}"


def _owner_alive(token: str) -> bool:
    try:
        boot, pid, start = token.split(":")
    except ValueError:
        return False
    return boot == _boot_id() and _proc_start(int(pid)) == start


class SandboxError(RuntimeError):
    """The sandbox backend failed (no engine, no container could start, the pool is closed)."""


def reap_orphans(all_owners: bool = False) -> list[str]:
    """Remove sandbox containers whose owning process is gone (or all of them). Returns names."""
    r = subprocess.run(["docker", "ps", "-a", "--filter", f"label={LABEL}=1", "--format",
                        '{{.Names}}\t{{.Label "' + OWNER_LABEL + '"}}'],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SandboxError("the Docker engine does not answer (`docker ps` failed: "
                           f"{r.stderr.strip()[-300:]}); start one with scripts/ensure_docker.sh")
    dead = []
    for line in r.stdout.splitlines():
        name, _, owner = line.partition("\t")
        if all_owners or not _owner_alive(owner):
            dead.append(name)
    if dead:
        subprocess.run(["docker", "rm", "-f", *dead], capture_output=True)
    return dead


class _Container:
    """One warm container: a ``docker run -i`` child process and its framed pipe."""

    def __init__(self, image: str, limits: Limits, name: str, labels: Mapping[str, str],
                 start_timeout: float = 60.0):
        self.name, self.limits, self.runs = name, limits, 0
        cmd = ["docker", "run", *docker_run_args(limits, name, labels), image,
               "python3", "-I", "-S", "-c", _BOOT]
        # Own session: a Ctrl-C to our process group does not kill the containers mid-close.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._buf = bytearray()
        self._stderr_tail = bytearray()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self._write(b"%d\n" % len(_AGENT_SRC) + _AGENT_SRC)
            hello = self._recv(time.monotonic() + start_timeout)
        except Exception as exc:
            self.kill()
            raise SandboxError(f"container {name} did not start: {exc}; docker said: "
                               f"{self.stderr_tail()}") from exc
        if not hello.get("ready"):
            self.kill()
            raise SandboxError(f"container {name}: bad hello {hello}")
        self.oom_counter = bool(hello.get("oom_counter"))

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            self._stderr_tail = (self._stderr_tail + chunk)[-4096:]

    def stderr_tail(self) -> str:
        return self._stderr_tail.decode(errors="replace").strip()

    def _write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _recv(self, deadline: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        need: int | None = None
        while True:
            if need is None and b"\n" in self._buf:
                line, _, rest = bytes(self._buf).partition(b"\n")
                need, self._buf = int(line), bytearray(rest)
            if need is not None and len(self._buf) >= need:
                msg, self._buf = bytes(self._buf[:need]), bytearray(self._buf[need:])
                return json.loads(msg)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from the sandbox agent in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError("sandbox agent exited")
                self._buf += chunk

    def request(self, req: dict, deadline: float) -> dict:
        data = json.dumps(req).encode()
        self._write(b"%d\n" % len(data) + data)
        self.runs += 1
        return self._recv(deadline)

    def close(self) -> None:
        """Graceful: EOF on the agent's stdin makes it exit; ``--rm`` removes the container."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass

    def kill(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)
        self.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _encode_files(files: Mapping[str, Any] | None) -> dict[str, dict]:
    out = {}
    for rel, content in (files or {}).items():
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        if isinstance(content, str):
            content = content.encode()
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm.startswith(".."):
            raise ValueError(f"file path must be relative and stay inside /work: {rel!r}")
        out[norm] = {"data": base64.b64encode(content).decode(), "mode": mode}
    return out


class SandboxPool:
    """``size`` warm containers of ``image``; :meth:`run` is thread-safe and runs on a free one.

    A container is recycled (removed and replaced in the background) after a timeout, an OOM
    kill, leftover processes that would not die, an agent failure, or ``limits.max_runs`` runs.
    """

    def __init__(self, image: str | None = None, size: int = 4, limits: Limits | None = None,
                 *, reply_grace_s: float = 5.0, start_timeout_s: float = 60.0):
        if size < 1:
            raise ValueError(f"SandboxPool: size must be >= 1, got {size}")
        self.image = image or default_image()
        self.size, self.limits = size, limits or Limits()
        self.reply_grace_s, self.start_timeout_s = reply_grace_s, start_timeout_s
        self.id = uuid.uuid4().hex[:10]
        self._labels = {LABEL: "1", OWNER_LABEL: _owner_token(), POOL_LABEL: self.id}
        self._idle: queue.Queue[_Container] = queue.Queue()
        self._lock = threading.Lock()
        self._all: set[_Container] = set()
        self._counter = 0
        self._closed = False
        self._start_error: str | None = None
        self.stats = {"runs": 0, "recycled": 0, "start_failures": 0}
        reap_orphans()
        self._starter = cf.ThreadPoolExecutor(max(1, min(size, 4)), thread_name_prefix="sbx-start")
        try:
            list(self._starter.map(lambda _: self._start_one(raise_errors=True), range(size)))
        except Exception:
            self.close()
            raise
        atexit.register(self.close)

    # ---- lifecycle -------------------------------------------------------------------------
    def _start_one(self, raise_errors: bool = False) -> None:
        with self._lock:
            self._counter += 1
            name = f"m1rl-sbx-{self.id}-{self._counter}"
        for attempt in range(3):
            try:
                c = _Container(self.image, self.limits, name if attempt == 0 else f"{name}r{attempt}",
                               self._labels, self.start_timeout_s)
                break
            except Exception as exc:
                self.stats["start_failures"] += 1
                err = str(exc)
                if raise_errors and attempt == 2:
                    raise
        else:
            self._start_error = err
            return
        with self._lock:
            if self._closed:
                c.kill()
                return
            self._all.add(c)
        self._idle.put(c)

    def _retire(self, c: _Container, kill: bool) -> None:
        with self._lock:
            self._all.discard(c)
            closed = self._closed
        self.stats["recycled"] += 1
        if kill:
            threading.Thread(target=c.kill, daemon=True).start()
        else:
            c.close()
        if not closed:
            self._starter.submit(self._start_one)

    def close(self) -> None:
        """Remove every container of this pool (idempotent; also runs at interpreter exit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cs = list(self._all)
            self._all.clear()
        for c in cs:
            c.close()
        names = [c.name for c in cs]
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        for c in cs:
            try:
                c.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                c.proc.kill()
        self._starter.shutdown(wait=False, cancel_futures=True)
        stragglers = self.container_names()  # replacements that were starting while we closed
        if stragglers:
            subprocess.run(["docker", "rm", "-f", *stragglers], capture_output=True)
        atexit.unregister(self.close)

    def container_names(self) -> list[str]:
        """Names of this pool's containers as Docker sees them (by label)."""
        r = subprocess.run(["docker", "ps", "-a", "--filter", f"label={POOL_LABEL}={self.id}",
                            "--format", "{{.Names}}"], capture_output=True, text=True)
        return r.stdout.split()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- running ---------------------------------------------------------------------------
    def _acquire(self, wait_s: float = 600.0) -> _Container:
        deadline = time.monotonic() + wait_s
        while True:
            if self._closed:
                raise SandboxError("pool is closed")
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                with self._lock:
                    empty = not self._all
                if empty and self._start_error:
                    raise SandboxError(
                        f"no sandbox container could start: {self._start_error}") from None
                if time.monotonic() > deadline:
                    raise SandboxError(f"no free sandbox container within {wait_s}s") from None

    def run(self, command: str | Sequence[str], files: Mapping[str, Any] | None = None,
            stdin: str | bytes | None = None, timeout: float | None = None,
            env: Mapping[str, str] | None = None, max_output: int | None = None) -> ExecResult:
        """Run ``command`` (a shell string or an argv list) in ``/work`` of a fresh work dir.

        files: ``{relative path: str | bytes | (content, mode)}`` written before the run.
        stdin: the command's standard input. timeout: wall-clock seconds (default
        ``limits.timeout_s``), enforced inside and, with a grace, from outside.
        env: extra environment variables (the base environment is fixed and minimal).
        """
        timeout = self.limits.timeout_s if timeout is None else float(timeout)
        cap = self.limits.output_bytes if max_output is None else int(max_output)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        req = {"cmd": command if isinstance(command, str) else list(command),
               "files": _encode_files(files), "stdin": base64.b64encode(stdin or b"").decode(),
               "timeout": timeout, "max_output": cap, "env": dict(env or {})}
        t_queue = time.monotonic()
        c = self._acquire()
        queue_s = time.monotonic() - t_queue
        t0 = time.monotonic()
        try:
            reply = c.request(req, t0 + timeout + self.reply_grace_s)
        except TimeoutError:
            # The agent did not answer: enforce the limit from outside by removing the container.
            self._retire(c, kill=True)
            return ExecResult(-9, "", "", True, False, time.monotonic() - t0, queue_s=queue_s,
                              error="killed from outside: no reply within timeout + grace")
        except (EOFError, OSError, ValueError) as exc:
            self._retire(c, kill=True)
            return ExecResult(-1, "", "", False, False, time.monotonic() - t0, queue_s=queue_s,
                              error=f"sandbox agent failed: {exc}; docker said: {c.stderr_tail()}")
        self.stats["runs"] += 1
        if "error" in reply:
            self._retire(c, kill=True)
            return ExecResult(-1, "", "", False, False, time.monotonic() - t0, queue_s=queue_s,
                              error=f"sandbox agent error: {reply['error']}")
        oom = bool(reply["oom_killed"]) or (not c.oom_counter and reply["exit_code"] == -9
                                             and not reply["timed_out"])
        res = ExecResult(
            exit_code=reply["exit_code"],
            stdout=base64.b64decode(reply["stdout"]).decode(errors="replace"),
            stderr=base64.b64decode(reply["stderr"]).decode(errors="replace"),
            timed_out=reply["timed_out"], oom_killed=oom, duration=reply["duration"],
            stdout_truncated=reply["stdout_bytes"] > cap, stderr_truncated=reply["stderr_bytes"] > cap,
            queue_s=queue_s,
            extra={"stdout_bytes": reply["stdout_bytes"], "stderr_bytes": reply["stderr_bytes"],
                   "leftover_procs": reply.get("leftover", 0), "container": c.name})
        violation = res.timed_out or res.oom_killed or reply.get("leftover", 0) > 0
        if violation or c.runs >= self.limits.max_runs:
            self._retire(c, kill=violation)
        else:
            self._idle.put(c)
        return res

    def run_many(self, jobs: Sequence[Mapping[str, Any]], max_concurrency: int | None = None
                 ) -> list[ExecResult]:
        """Run ``jobs`` (each a dict of :meth:`run` keyword arguments) concurrently, in order."""
        n = max(1, min(max_concurrency or self.size, len(jobs) or 1))
        with cf.ThreadPoolExecutor(n, thread_name_prefix="sbx-run") as ex:
            return list(ex.map(lambda j: self.run(**j), jobs))
