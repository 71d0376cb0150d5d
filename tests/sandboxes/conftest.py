import pytest

from sandboxes import Limits, SandboxPool


@pytest.fixture(scope="session")
def sandbox_image():
    from sandboxes.testing import require_engine_and_image

    try:
        return require_engine_and_image()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


# Tight limits make each attack hit its cap quickly; size 1 so consecutive runs share a container.
TIGHT = Limits(memory_mb=128, cpus=0.5, pids=32, workdir_mb=8, tmp_mb=4, output_bytes=4096,
               timeout_s=5.0, max_runs=1000)


@pytest.fixture(scope="session")
def tight_pool(sandbox_image):
    with SandboxPool(sandbox_image, size=1, limits=TIGHT) as pool:
        yield pool


@pytest.fixture(scope="session")
def pool(sandbox_image):
    with SandboxPool(sandbox_image, size=2) as pool:
        yield pool
