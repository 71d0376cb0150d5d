"""A multi-host Ray cluster on one machine, each node in its own Linux network namespace, and
tiny training runs across it: two learners on two "hosts" form one gloo group (rendezvous on
rank 0's node), a rollout worker on a third host receives every weight push. Run A trains
straight; run B is stopped by killing learner rank 1 after its step-2 checkpoint, then resumed
with the same call: its per-step metrics must equal A's.

    sudo /work/main/.venv/bin/python benchmarks/multihost.py [--steps 4] [--json OUT.json]

Topology (addresses in a private /24 that the script picks, 10.203.X.0/24, unused on this
machine): a "switch" namespace holding a bridge (10.203.X.1), and one namespace per node, each
joined to the bridge by a veth pair: ``head`` (.10: the Ray head with no CPUs, and the driver),
``a`` and ``b`` (.11, .12: one learner each), ``c`` (.13: the rollout worker). Each node has one
CPU for actors, so the three actors land on three different hosts. Only these addresses are
ever contacted: the nodes' default route leads into the switch namespace, which has no way out.

What it isolates: the network (each node has its own interfaces, addresses and loopback: a
process bound to 127.0.0.1 on one node cannot be reached from another) and Ray (each node its
own raylet, object store, temp dir and working directory). What it does not: the filesystem
(one disk: the venv, the code and the run directory are the same files on every node; so this
rig cannot catch a checkpoint written on one host and read on another), CPU and memory.

Fails (exit 1, a message) when namespaces cannot be made: it never skips. Everything it made
(namespaces, the bridge, the processes in them) is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = Path(sys.executable)
NODES = {"head": 10, "a": 11, "b": 12, "c": 13}  # node -> host part of its address
WORKER_CPUS = {"head": 0, "a": 1, "b": 1, "c": 1}


def sh(*cmd: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


class Rig:
    """The namespaces, the bridge and the Ray nodes; a context manager that removes them."""

    def __init__(self, work: Path):
        self.work = work
        self.tag = f"mh{os.getpid() % 10000}"
        self.subnet = self._free_subnet()
        self.ns = {n: f"{self.tag}-{n}" for n in NODES}
        self.switch = f"{self.tag}-sw"
        self.token = secrets.token_hex(32)  # this cluster's own Ray auth token
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []

    @staticmethod
    def _free_subnet() -> str:
        used = sh("ip", "-o", "addr") + sh("ip", "route")
        free = [x for x in range(1, 255) if f"10.203.{x}." not in used]
        if not free:
            raise RuntimeError("no free 10.203.X.0/24 on this machine")
        return f"10.203.{random.choice(free)}"

    def ip(self, node: str) -> str:
        return f"{self.subnet}.{NODES[node]}"

    # ---- network --------------------------------------------------------------------------
    def build_network(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root (run with sudo)")
        for ns in [self.switch, *self.ns.values()]:
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        sw = ["ip", "netns", "exec", self.switch]
        sh(*sw, "ip", "link", "add", "br0", "type", "bridge")
        sh(*sw, "ip", "addr", "add", f"{self.subnet}.1/24", "dev", "br0")
        sh(*sw, "ip", "link", "set", "br0", "up")
        for node, ns in self.ns.items():
            port = f"p-{node}"
            sh(*sw, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh(*sw, "ip", "link", "set", port, "master", "br0", "up")
            inside = ["ip", "netns", "exec", ns]
            sh(*inside, "ip", "link", "set", "lo", "up")
            sh(*inside, "ip", "addr", "add", f"{self.ip(node)}/24", "dev", "eth0")
            sh(*inside, "ip", "link", "set", "eth0", "up")
            sh(*inside, "ip", "route", "add", "default", "via", f"{self.subnet}.1")

    # ---- Ray ------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        # (tests/conftest.py sets the first to 0, which makes `ray start` refuse a second node;
        # a learner built in this process earlier sets the second to its loopback interface,
        # which would make every node's gloo bind loopback: each node picks its own)
        drop = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "GLOO_SOCKET_IFNAME"}
        base = {k: v for k, v in os.environ.items() if k not in drop}
        return {**base, "PYTHONPATH": str(REPO), "PATH": f"{PY.parent}:{os.environ['PATH']}",
                "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false",
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def start_ray(self) -> str:
        head = f"{self.ip('head')}:6379"
        for node, ns in self.ns.items():
            home = self.work / node  # the node's own working directory
            (home / "ray").mkdir(parents=True, exist_ok=True)
            role = (["--head", "--port=6379", "--include-dashboard=false"] if node == "head"
                    else [f"--address={head}"])
            cmd = ["ip", "netns", "exec", ns, str(PY.parent / "ray"), "start", "--block", *role,
                   f"--node-ip-address={self.ip(node)}", f"--num-cpus={WORKER_CPUS[node]}",
                   f"--temp-dir={home / 'ray'}", "--object-store-memory=200000000",
                   "--disable-usage-stats"]
            log = open(home / "ray_start.log", "w")
            self.procs.append(subprocess.Popen(cmd, cwd=home, env=self.env(), stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
            if node == "head":
                time.sleep(5)  # the GCS first
        time.sleep(10)
        for node, p in zip(self.ns, self.procs):
            if p.poll() is not None:
                log = (self.work / node / "ray_start.log").read_text()[-1500:]
                raise RuntimeError(f"`ray start` on node {node} exited ({p.returncode}):\n{log}")
        return head

    def driver(self, address: str, args: argparse.Namespace) -> dict:
        """The training run's driver, on the head node (its own namespace and directory)."""
        out = self.work / "driver.json"
        cmd = ["ip", "netns", "exec", self.ns["head"], str(PY), str(Path(__file__).resolve()),
               "--driver", address, "--steps", str(args.steps), "--run-dir",
               str(self.work / "runs"), "--json", str(out), "--nodes", str(len(NODES))]
        res = subprocess.run(cmd, cwd=self.work / "head", env=self.env(), timeout=args.timeout)
        if res.returncode != 0 or not out.exists():
            raise RuntimeError(f"the driver failed ({res.returncode}); Ray logs under {self.work}")
        return json.loads(out.read_text())

    # ---- teardown -------------------------------------------------------------------------
    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:  # each `ray start --block` leads its own process group
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for ns in reversed(self.made):  # what is still running inside our namespaces: ours
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = [ns for ns in self.made if ns in sh("ip", "netns", "list")]
        if left:
            print(f"could not remove namespaces {left}", file=sys.stderr)


# ---- the driver (runs inside the head node's namespace) ----------------------------------------
TIMING = ("time/", "_per_s")  # wall-clock metrics differ between runs by nature


def drive(args: argparse.Namespace) -> None:
    """Run A straight for ``--steps`` steps. Run B the same, but learner rank 1 is killed (on
    its host) once step 2's checkpoint exists; the same call then resumes it to the end. Writes
    where the actors ran, the error that stopped B, and both runs' per-step metrics."""
    import ray

    from rlhf.calls import ActorFailure
    from rlhf.driver import run as run_module
    from rlhf.driver import train

    ray.init(address=args.driver)
    deadline = time.monotonic() + 300
    while sum(n["Alive"] for n in ray.nodes()) < args.nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sum(n['Alive'] for n in ray.nodes())} of {args.nodes} "
                               "nodes joined")
        time.sleep(1)
    nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    ray.shutdown()  # each run connects again, as `rlhf train --address` does

    placed: list[dict] = []
    real_start = run_module.start_roles

    def start_roles(*a, **kw):  # record where the actors landed
        learners, sync, rollouts = real_start(*a, **kw)
        where = lambda actor: ray.get(actor.__ray_call__.remote(  # noqa: E731
            lambda self: ray.util.get_node_ip_address()))
        placed.append(dict(learner_group=learners.address,
                           learners=[where(x) for x in learners.actors],
                           rollouts=[where(x) for x in rollouts.actors]))
        return learners, sync, rollouts

    run_module.start_roles = start_roles
    t0 = time.perf_counter()
    train(_recipe(args, "straight"), address=args.driver)
    wall = time.perf_counter() - t0

    ckpt = Path(args.run_dir) / "resumed" / "checkpoints" / "step_000002" / "driver.json"

    def kill_rank_1() -> None:
        while not ckpt.exists():
            time.sleep(0.2)
        ray.kill(ray.get_actor("m1rl-resumed-learner-1"))

    killer = threading.Thread(target=kill_rank_1, daemon=True)
    killer.start()
    stopped = None
    try:
        train(_recipe(args, "resumed"), address=args.driver)
    except ActorFailure as exc:
        stopped = str(exc)
    killer.join(timeout=1)
    train(_recipe(args, "resumed"), address=args.driver)
    straight, resumed = _rows(args, "straight"), _rows(args, "resumed")
    Path(args.json).write_text(json.dumps({
        "nodes": nodes, "placement": placed, "wall_s": round(wall, 1), "stopped_by": stopped,
        "straight": straight, "resumed": resumed}, indent=2))


def _recipe(args: argparse.Namespace, name: str):
    from rlhf.config import load_recipe

    return load_recipe(REPO / "recipes" / "distributed_cpu.yaml", [
        f"run.output_dir={args.run_dir}", f"run.name={name}", f"run.steps={args.steps}",
        "run.save_every=1", "run.plot=false", "logging.tensorboard=false", "data.train.size=16",
        "data.eval=null", "data.prompts_per_step=4", "rollout.max_new_tokens=16",
        "train.num_learners=2", "rollout.num_workers=1", "train.mini_batches=1",
        "rewards.verifiers=[{name: 'tests.plugins:digit_count'}]"])


def _rows(args: argparse.Namespace, name: str) -> list[dict]:
    rows = [json.loads(x) for x in
            (Path(args.run_dir) / name / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIMING)}
            for r in rows if r["kind"] == "train"]


def check(result: dict, rig: Rig, steps: int) -> list[str]:
    """What must hold for the rig to pass; the list of what does not."""
    bad = []
    hosts = {rig.ip(n) for n in ("a", "b", "c")}
    for p in result["placement"]:
        learners, rollouts = p["learners"], p["rollouts"]
        if len(set(learners)) != 2 or not set(learners) <= hosts:
            bad.append(f"learners not on two worker hosts: {learners}")
        if not set(rollouts) <= hosts or set(rollouts) & set(learners):
            bad.append(f"rollout worker not on a third host: {rollouts}")
        if p["learner_group"].split(":")[0] != learners[0]:
            bad.append(f"learner group met at {p['learner_group']}, not on rank 0's host "
                       f"{learners[0]}")
    straight, resumed = result["straight"], result["resumed"]
    if [r["step"] for r in straight] != list(range(1, steps + 1)):
        bad.append(f"run A logged steps {[r['step'] for r in straight]}")
    for r in straight:  # the weights changed, and each step sampled from the pushed ones
        if not (r["grad_norm"] > 0 and r["policy_version"] == r["step"]
                and r["mismatch/pearson"] > 0.999):
            bad.append(f"step {r['step']}: grad_norm {r['grad_norm']}, version "
                       f"{r['policy_version']}, pearson {r['mismatch/pearson']}")
    if not (result["stopped_by"] or "").startswith("learner rank 1 died"):
        bad.append(f"run B was not stopped by learner rank 1's death: {result['stopped_by']}")
    if resumed != straight:
        bad.append("run B (killed, resumed) differs from run A: "
                   + str([(a, b) for a, b in zip(straight, resumed) if a != b][:1]))
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--timeout", type=float, default=1500.0, help="the driver's wall-clock limit (s)")
    p.add_argument("--json", help="write the result here too")
    p.add_argument("--driver", help=argparse.SUPPRESS)  # internal: run as the driver
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--nodes", type=int, default=len(NODES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.driver:
        drive(args)
        return 0
    work = Path(tempfile.mkdtemp(prefix="mhrig", dir="/tmp"))
    try:
        with Rig(work) as rig:
            rig.build_network()
            result = rig.driver(rig.start_ray(), args)
            result["addresses"] = {n: rig.ip(n) for n in NODES}
            result["namespaces"] = list(rig.made)
            bad = check(result, rig, args.steps)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"multihost rig FAILED: {exc} (logs: {work})", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if bad:
        print("multihost rig FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    print("multihost rig passed: 2 learners on 2 hosts, rollout on a third, every push received; "
          "rank 1 killed after step 2, the resumed run equals the straight one step by step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
