import os

# Keep every Ray process of the tests on loopback (Ray otherwise binds the node's interface IP).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from rlhf.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=64,
                                num_layers=2, num_heads=4, num_kv_heads=2))


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
