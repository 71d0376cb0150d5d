"""The learners' part of a step checkpoint, sharded with ``torch.distributed.checkpoint`` (DCP).

``step_NNNNNN/learner/`` is a DCP directory: every rank writes its own shard of the model and
optimizer state (``__<rank>_0.distcp``: the FSDP2 shards it holds, nothing gathered) and its RNG
state; the coordinator writes ``.metadata`` last, once every shard is in. ``learner.json`` (rank
0) holds the rest as JSON: policy version, scheduler state, optimizer hyper-parameters. Loading
reads each rank's slices back (another world size reshards) and never runs pickled code: tensors
are read with ``torch.load(weights_only=True)`` (DCP's reader), ``.metadata`` through
:class:`SafeReader`, which allows only DCP's own metadata classes, and no pickled non-tensor
values are stored. :func:`read_model` reads the model part into a plain state dict on CPU,
without a process group (``rlhf export``, the run's ``final_model``).

:func:`probe` is the start-up check that a node reaches the checkpoint directory (the same
directory as the driver's, writable): checkpoints of a multi-node run need a shared filesystem.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

RULE = ("run.checkpoint_dir must be a shared filesystem or a path mounted at the same place on "
        "every node (the driver and every learner write to it)")
SHARDS = "learner"  # the DCP directory inside a step checkpoint
STATE = "learner.json"  # rank 0's non-tensor state


def is_complete(step_dir: Path) -> bool:
    """Every shard and rank 0's state written (DCP writes ``.metadata`` after all shards)."""
    return (step_dir / SHARDS / ".metadata").exists() and (step_dir / STATE).exists()


# ---- save / load (every rank, collective) ------------------------------------------------
def save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any, version: int, rank: int) -> None:
    """This rank's shards into ``path/learner/``; rank 0 also writes ``path/learner.json``."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)  # sharded DTensors under FSDP2
    dcp.save({"model": model_sd, "optim": {"state": optim_sd["state"]},
              f"rng.{rank}": torch.get_rng_state()}, checkpoint_id=str(path / SHARDS))
    if rank == 0:
        tmp = path / f"{STATE}.tmp"
        tmp.write_text(json.dumps({"version": version, "scheduler": scheduler.state_dict(),
                                   "param_groups": optim_sd["param_groups"]}))
        os.replace(tmp, path / STATE)


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any, rank: int) -> int:
    """Restore this rank's part of what :func:`save` wrote; the policy version."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = json.loads((path / STATE).read_text())
    model_sd, optim_sd = get_state_dict(model, optimizer)  # the targets, sharded like this run
    target: dict[str, Any] = {"model": model_sd, "optim": {"state": optim_sd["state"]}}
    reader = SafeReader(path / SHARDS)
    rng_key = f"rng.{rank}"
    has_rng = rng_key in reader.read_metadata().state_dict_metadata  # absent: a new world size
    if has_rng:
        target[rng_key] = torch.get_rng_state()
    dcp.load(target, storage_reader=reader)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in state["param_groups"]]
    set_state_dict(model, optimizer, model_state_dict=target["model"],
                   optim_state_dict={"state": target["optim"]["state"], "param_groups": groups})
    scheduler.load_state_dict(state["scheduler"])
    if has_rng:
        torch.set_rng_state(target[rng_key])
    return int(state["version"])


def read_model(step_dir: Path) -> dict[str, torch.Tensor]:
    """The full model state dict (policy names, the saved dtype) on CPU, no process group."""
    reader = SafeReader(step_dir / SHARDS)
    sd = {k.removeprefix("model."): torch.empty(m.size, dtype=m.properties.dtype)
          for k, m in reader.read_metadata().state_dict_metadata.items()
          if k.startswith("model.") and isinstance(m, TensorStorageMetadata)}
    if not sd:
        raise ValueError(f"{step_dir / SHARDS}: no model tensors in this checkpoint")
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": yes
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"model": sd}, storage_reader=reader, no_dist=True)
    return sd


# ---- reading DCP metadata without running pickled code -----------------------------------
_ALLOWED = {("torch.distributed.checkpoint.metadata", n) for n in (
    "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "TensorProperties",
    "ChunkStorageMetadata", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "Path"),
    ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "torch" and isinstance(
                getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"checkpoint metadata refers to {module}.{name}, which is "
                                     "not part of DCP's metadata: refusing to load it")


class SafeReader(FileSystemReader):
    """DCP's file reader with ``.metadata`` read by an unpickler that allows only DCP's own
    metadata classes, torch dtypes and sizes (DCP itself uses ``pickle.load``)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as fh:
            metadata = _MetadataUnpickler(fh).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"{path}: not DCP metadata")
        meta = metadata.storage_meta or StorageMeta()
        meta.load_id = self.load_id
        metadata.storage_meta = meta
        return metadata


# ---- the checkpoint directory must be the driver's, reachable from every node ------------
def write_token(root: Path) -> Path:
    """The driver's probe file in ``root`` (created): each node must see it (:func:`probe`)."""
    root.mkdir(parents=True, exist_ok=True)
    token = root / f".probe-driver-{uuid.uuid4().hex}"
    token.write_text(token.name)
    return token


def probe(root: Path, token: Path, who: str) -> str | None:
    """None when this process sees the driver's ``token`` in ``root`` and can create, write
    and delete a file there; else what failed, naming ``who`` (the actor and its node) and
    the path."""
    where = who
    if not root.is_dir() or not token.exists() or token.read_text() != token.name:
        return (f"{where} does not see the driver's checkpoint directory {root} (its probe file "
                f"{token.name} is missing there): {RULE}")
    mine = root / f".probe-{uuid.uuid4().hex}"
    try:
        mine.write_text("ok")
        mine.unlink()
    except OSError as exc:
        return f"{where} cannot write to the checkpoint directory {root} ({exc}): {RULE}"
    return None
