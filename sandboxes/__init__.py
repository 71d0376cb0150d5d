"""Docker-sandboxed execution of untrusted commands: image build without a registry, a pool of
warm containers, limits, and runs. Nothing here knows about RL.

Usage::

    python -m sandboxes build-image          # once per machine, ~1-2 min, idempotent
    from sandboxes import SandboxPool, Limits
    with SandboxPool(size=4, limits=Limits(memory_mb=256, cpus=1)) as pool:
        r = pool.run("python3 -c 'print(6*7)'", timeout=5)      # ExecResult(exit_code=0, stdout='42\\n', ...)

What is isolated (each property has an attack test in ``tests/sandboxes/test_containment.py``):

* **network**: ``--network none`` (loopback only); always, not configurable.
* **memory**: ``--memory`` = ``--memory-swap`` (no swap); tmpfs pages count too; an OOM kill is
  reported as ``oom_killed`` (read from the container's memory cgroup ``oom_kill`` counter).
* **processes**: ``--pids-limit`` (fork bombs hit it); **CPU**: ``--cpus`` (CFS quota).
* **wall clock**: the agent kills the run at ``timeout``; independently the host removes the
  container when no reply arrives within ``timeout + grace`` (enforced from outside).
* **filesystem**: read-only root; the only writable places are size-capped tmpfs mounts
  (``/work`` = cwd, ``/tmp``, ``/dev/shm``) wiped before and after every run.
* **privileges**: uid 1000 (not root), ``--cap-drop ALL``, ``no-new-privileges``, core dumps off.
* **environment**: nothing of the host's environment enters; each run gets a fixed minimal
  environment plus what the caller passes in ``env``.
* **host access**: no bind mounts, no docker socket, no devices (Docker's own per-container
  ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` files are the only host files, read-only
  to uid 1000).
* **output**: stdout/stderr are read by the in-container agent through pipes; a capped prefix is
  kept and the rest drained and counted (``stdout_truncated``). Output never goes to Docker's log
  driver (``--log-driver none``), so a flood cannot wedge the daemon.
* **run separation**: at the end of a run every process of the container except PID 1 is
  SIGKILLed (``kill(-1)``: daemons and ``setsid`` escapes included) and the work dirs are wiped; a
  container is recycled after a violation (timeout, OOM, unkillable leftovers) or ``max_runs`` runs.
* **leaks**: containers are labelled with their owner process; they run ``--rm`` with the agent
  as PID 1 reading the host's pipe, so when the owner dies (even SIGKILL) the agent sees EOF and
  the container disappears; ``close()``/atexit remove them, and a new pool reaps containers of
  dead owners by label.
* **agent integrity**: the agent is PID 1 (cannot be killed or stopped from inside) and
  non-dumpable (same-uid code cannot ptrace it or open its ``/proc/1/fd``), so a run cannot forge
  the agent's reply.

What is NOT isolated:

* the kernel is shared (a kernel exploit escapes; use gVisor/Kata via Docker's ``--runtime`` for
  hostile multi-tenant use; not wired up here);
* runs in the same container share uid 1000, the IPC namespace (SysV IPC objects survive a run)
  and the page cache; across runs only the wiped tmpfs dirs and killed processes are guaranteed;
* concurrent containers share the host's CPU and disk I/O bandwidth (no ``--blkio`` limits), and
  timing side channels are not addressed;
* inside one run, the command and everything it starts share one uid: code can signal or trace
  the other processes of the same run (a harness that must resist the code it tests has to make
  itself non-dumpable and keep its secrets off argv/files, as ``rewards.code`` does).
"""

from sandboxes.image import build_debootstrap, build_dockerfile, default_image, image_tag
from sandboxes.pool import ExecResult, Limits, SandboxError, SandboxPool, reap_orphans

__all__ = ["ExecResult", "Limits", "SandboxError", "SandboxPool", "build_debootstrap",
           "build_dockerfile", "default_image", "image_tag", "reap_orphans"]
