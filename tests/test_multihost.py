"""The multi-host rig (benchmarks/multihost.py): a Ray head and three worker nodes, each in its own
Linux network namespace with its own address and working directory; two learners on two hosts
form one group, the rollout worker on a third receives every push, a learner killed after a
checkpoint stops the run cleanly and the resumed run equals the uninterrupted one step by step.
Needs root for the namespaces: without them this test fails, saying why; it never skips."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parent.parent / "benchmarks" / "multihost.py"


def test_learners_on_two_hosts_and_rollout_on_a_third_train_and_resume_exactly(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "multihost rig passed" in out.stdout
    made = json.loads((tmp_path / "r.json").read_text())["namespaces"]
    assert len(made) == 5  # the switch and four nodes, all removed again
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not set(made) & set(left)
