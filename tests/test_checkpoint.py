"""Sharded step checkpoints (rlhf/learner/checkpoint.py, rlhf/driver/checkpoint.py): DCP shards
that restore the exact training state, a metadata reader that runs no foreign pickled code, a
full state dict read without a process group, and the start-up check that every node reaches
``run.checkpoint_dir``."""

import json
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from rlhf.learner import checkpoint as ckpt

ROOT = Path(__file__).parent.parent
RECIPES = ROOT / "recipes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_rank():
    """A one-process gloo group (what a single CPU learner runs in)."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _trainer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    return model, opt, sched


def _step(model, opt, sched):
    x = torch.randn(4, 6)  # draws from the RNG, so a restored RNG state shows
    model(x).square().mean().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.unit
def test_a_restored_checkpoint_continues_exactly_like_the_saved_run(tmp_path, one_rank):
    model, opt, sched = _trainer()
    for _ in range(2):
        _step(model, opt, sched)
    ckpt.save(tmp_path, model, opt, sched, version=2, rank=0)
    assert ckpt.is_complete(tmp_path)
    assert sorted(p.name for p in (tmp_path / "learner").iterdir()) == [".metadata", "__0_0.distcp"]
    _step(model, opt, sched)
    expected, lr = _params(model), sched.get_last_lr()

    fresh, fresh_opt, fresh_sched = _trainer(seed=1)  # other weights, no optimizer state
    torch.manual_seed(123)  # another RNG state
    assert ckpt.load(tmp_path, fresh, fresh_opt, fresh_sched, rank=0) == 2
    assert fresh_opt.param_groups[0]["betas"] == (0.8, 0.9)
    _step(fresh, fresh_opt, fresh_sched)
    got = _params(fresh)
    assert all(torch.equal(got[k], expected[k]) for k in expected)  # bit for bit
    assert fresh_sched.get_last_lr() == lr

    (tmp_path / "learner" / ".metadata").unlink()  # a save that did not finish
    assert not ckpt.is_complete(tmp_path)


@pytest.mark.unit
def test_read_model_needs_no_process_group(tmp_path, one_rank):
    model, opt, sched = _trainer()
    _step(model, opt, sched)
    ckpt.save(tmp_path, model, opt, sched, version=1, rank=0)
    dist.destroy_process_group()
    sd = ckpt.read_model(tmp_path)
    assert sd.keys() == model.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


class _Payload:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (str(self.target),))


@pytest.mark.unit
def test_metadata_that_would_run_code_is_refused(tmp_path):
    from torch.distributed.checkpoint import FileSystemReader

    ran = tmp_path / "payload_ran"
    (tmp_path / "learner").mkdir()
    (tmp_path / "learner" / ".metadata").write_bytes(pickle.dumps(_Payload(ran)))
    with pytest.raises(pickle.UnpicklingError, match=r"makedirs, which is not part of DCP"):
        ckpt.SafeReader(tmp_path / "learner").read_metadata()
    assert not ran.exists()
    with pytest.raises(AttributeError):  # DCP's reader runs the payload, then fails on its result
        FileSystemReader(str(tmp_path / "learner")).read_metadata()
    assert ran.is_dir()


@pytest.mark.unit
def test_probe_names_the_actor_and_the_path_a_node_cannot_reach(tmp_path):
    driver_dir, node_dir = tmp_path / "shared", tmp_path / "node_local"
    token = ckpt.write_token(driver_dir)
    assert ckpt.probe(driver_dir, token, "learner rank 1") is None
    node_dir.mkdir()  # the same path on a node with its own disk: no driver probe file there
    said = ckpt.probe(node_dir, node_dir / token.name, "learner rank 1 on node 10.0.0.2")
    assert said is not None and said.startswith("learner rank 1 on node 10.0.0.2 does not see")
    assert str(node_dir) in said and "shared filesystem" in said


@pytest.mark.integration
def test_learners_report_a_checkpoint_dir_they_do_not_share(tmp_path, local_ray, tiny_model_dir):
    from rlhf.config import CispoLoss, ModelConfig, TrainConfig
    from rlhf.driver.checkpoint import CheckpointDirError, check_reachable
    from rlhf.driver.roles import LearnerGroup

    group = LearnerGroup(1, dict(model_path=tiny_model_dir, model_cfg=ModelConfig(path=tiny_model_dir),
                                 train_cfg=TrainConfig(), loss_cfg=CispoLoss(), lm_head_fp32=True))
    try:
        check_reachable(tmp_path / "ok", group)  # the driver's directory, seen by the learner
        assert list((tmp_path / "ok").iterdir()) == []  # every probe file removed
        token = ckpt.write_token(tmp_path / "driver")  # a token the learner looks for elsewhere
        said = group.probe_checkpoint_dir(str(tmp_path / "elsewhere"), str(token))
        assert len(said) == 1 and said[0].startswith("learner rank 0 on node 127.0.0.1")
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        with pytest.raises(CheckpointDirError, match=r"the driver on .* cannot create or write the "
                                                     r"checkpoint directory .*a_file/ckpt"):
            check_reachable(blocker / "ckpt", group)
    finally:
        group.shutdown()


def _rows(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timing = lambda k: k.startswith("time/") or k.endswith("_per_s")  # noqa: E731 (wall clock)
    return {r["step"]: {k: v for k, v in r.items() if not timing(k)}
            for r in rows if r["kind"] == "train"}


@pytest.mark.integration
def test_two_learners_write_one_shard_each_and_resume_exactly(tmp_path):
    """2 FSDP2 ranks on gloo: each writes its own shard (about half the state), and a run
    stopped after step 1 and resumed logs the uninterrupted run's metrics at step 2."""
    from rlhf.config import load_recipe
    from rlhf.driver import train

    def recipe(name, steps, *extra):
        return load_recipe(RECIPES / "distributed_cpu.yaml", [
            f"run.output_dir={tmp_path}", f"run.name={name}", f"run.steps={steps}",
            "data.train.size=16", "data.eval=null", "run.plot=false", "rollout.num_workers=1",
            "logging.tensorboard=false", *extra])

    train(recipe("straight", 2))
    shared = tmp_path / "shared_ckpts"
    for steps in (1, 2):
        train(recipe("resumed", steps, f"run.checkpoint_dir={shared}"))
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2] and resumed == straight
    assert not (tmp_path / "resumed" / "checkpoints").exists()  # all in run.checkpoint_dir
    shards = shared / "step_000002" / "learner"
    sizes = {p.name: p.stat().st_size for p in shards.iterdir()}
    assert set(sizes) == {".metadata", "__0_0.distcp", "__1_0.distcp"}
    state = sum(v.numel() * 4 * 3 for v in ckpt.read_model(shards.parent).values())  # w, m, v
    both = sizes["__0_0.distcp"] + sizes["__1_0.distcp"]
    assert state < both < 1.3 * state, sizes  # the whole state once (plus per-tensor headers)
    for rank in (0, 1):
        assert 0.4 * both < sizes[f"__{rank}_0.distcp"] < 0.6 * both, sizes  # about half each
