"""Lifecycle of the sandboxed verifiers: preflight names what is wrong, a backend that is down
gives unjudged results (never silent zeros), close() leaves no container behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rewards import VerifierUnavailable, get_verifier, is_unjudged

pytestmark = pytest.mark.docker
SWE_DATA = Path(__file__).resolve().parents[1] / "data" / "swe"
PROGRAM = "```python\nprint(int(input()) + 1)\n```"
TASK = {"tests": {"inputs": ["1\n"], "outputs": ["2\n"]}}


def containers(pool_id: str) -> list[str]:
    r = subprocess.run(["docker", "ps", "-a", "--filter", f"label=m1rl.sandbox.pool={pool_id}",
                        "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return r.stdout.split()


@pytest.mark.parametrize("name", ["code", "swe"])
def test_preflight_passes_on_a_working_backend(sandbox_image, name):
    with get_verifier(name, image=sandbox_image, pool_size=1) as v:
        v.preflight()


def test_preflight_names_a_missing_image():
    v = get_verifier("code", image="m1rl-sandbox:no-such-image", pool_size=1)
    with pytest.raises(VerifierUnavailable, match="no-such-image does not exist; build it with"):
        v.preflight()


@pytest.mark.parametrize("name", ["code", "swe"])
def test_engine_down_is_a_clear_preflight_error_and_unjudged_results(sandbox_image, monkeypatch, name):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    v = get_verifier(name, image=sandbox_image, pool_size=1)
    with pytest.raises(VerifierUnavailable, match="no Docker engine answers `docker info`"):
        v.preflight()
    swe = SWE_DATA / "toolz_frequencies"
    task = TASK if name == "code" else dict(json.loads((swe / "instance.json").read_text()),
                                            repo=str(swe / "repo.tar.gz"))
    response = PROGRAM if name == "code" else f"```diff\n{(swe / 'gold.diff').read_text()}```"
    r = v(response, task)
    assert is_unjudged(r) and r.score == 0.0, r  # counted as a verifier error, not a zero
    assert r.info["error"].startswith("SandboxError: the Docker engine does not answer"), r.info
    v.close()


def test_close_releases_a_shared_pool_when_its_last_user_closes(sandbox_image):
    a = get_verifier("code", image=sandbox_image, pool_size=1, test_timeout=3.0)
    b = get_verifier("code", image=sandbox_image, pool_size=1, test_timeout=3.0)
    assert a(PROGRAM, TASK).score == 1.0 and b(PROGRAM, TASK).score == 1.0
    assert a.pool is b.pool
    pool_id = a.pool.id
    assert len(containers(pool_id)) == 1
    a.close()
    a.close()  # idempotent
    assert len(containers(pool_id)) == 1 and b(PROGRAM, TASK).score == 1.0
    b.close()
    assert containers(pool_id) == []
