"""`ray job submit -- rlhf train RECIPE` on a Ray cluster started with `ray start` (loopback only,
token authentication as Ray enables it by default): the job's driver connects to the cluster
through RAY_ADDRESS, trains, and leaves its metrics and summary behind."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    gcs, dash = _free_port(), _free_port()
    subprocess.run([BIN / "ray", "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True)
    # --block keeps `ray start` in the foreground: killing its process group takes down this
    # cluster only (`ray stop` would stop every Ray instance on the machine)
    # its own temp dir (short: Ray puts sockets there), so no cluster file is left in /tmp/ray
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    head = subprocess.Popen(
        [BIN / "ray", "start", "--head", "--block", f"--temp-dir={temp}",
         "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--num-cpus=4", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_dashboard(dash, head)
        yield env, f"http://127.0.0.1:{dash}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_dashboard(port: int, head: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no Ray dashboard on 127.0.0.1:{port} after {timeout} s")


def test_ray_job_submit_trains_a_recipe(ray_cluster, tmp_path):
    env, address = ray_cluster
    out = subprocess.run(
        [BIN / "ray", "job", "submit", f"--address={address}", f"--working-dir={REPO}", "--",
         "rlhf", "train", "recipes/distributed_cpu.yaml", "run.steps=2",
         f"run.output_dir={tmp_path}", "run.plot=false"],
        env=env, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "succeeded" in log, log[-3000:]
    run = tmp_path / "distributed_cpu"
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    steps = [m["step"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if m["kind"] == "train"]
    assert steps == [1, 2]
    assert (run / "final_model" / "config.json").exists()
