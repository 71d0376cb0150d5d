"""Experiment tracking: every metrics record of a run goes to ``metrics.jsonl`` and to the sinks of
the recipe's ``logging`` section (TensorBoard, Weights & Biases, MLflow) under the same names.

A record is what the driver logs (``{"kind": "train" | "eval" | "warmup", "step": ..., name:
value, ...}``). Its numbers are the metrics; their names are the JSON keys, unchanged in every
sink. Two step axes: ``step`` (RL step: train and eval records) and ``warmup/step`` (the
warm-up's own step, whose metric names all start with ``warmup/``). Each sink also gets the run
config: the whole recipe and the git commit of the toolkit (:func:`run_info`).

The optional sinks are imported only when their section is set (:func:`import_optional`), so
``wandb`` and ``mlflow`` are needed only where a recipe asks for them. Offline modes are the
libraries' own: ``logging.wandb.mode: offline`` (or ``WANDB_MODE``), a local MLflow store.

Resume: records after the checkpoint are dropped from ``metrics.jsonl`` (they will be redone),
TensorBoard is told to purge the same steps (``purge_step``), and a W&B or MLflow run carries on
under its stored id (``tracking.json``); those two keep the redone steps' first values in their
history as well.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from rlhf.config import LoggingConfig, MLflowConfig, Recipe, WandbConfig
from rlhf.driver.metrics import MetricsWriter
from rlhf.driver.resume import ResumePoint

STEP, WARMUP_STEP = "step", "warmup/step"  # the two step axes
_BOOKKEEPING = {"kind", "step", "warmup_step"}
_EXTRAS = {"wandb": "wandb", "mlflow": "mlflow", "tensorboard": "tensorboard"}


def import_optional(module: str, field: str) -> Any:
    """Import an optional sink's package, or say which recipe field needs it and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"{field} is set but the {module} package is not installed "
                           f"(pip install 'm1rl[{_EXTRAS[module]}]', or remove {field})") from exc


def tensorboard_enabled(cfg: LoggingConfig) -> bool:
    if cfg.tensorboard == "auto":
        return importlib.util.find_spec("tensorboard") is not None
    return bool(cfg.tensorboard)


def logging_problems(cfg: LoggingConfig) -> list[str]:
    """What ``rlhf validate`` reports before a run would stop: a sink set without its package."""
    need = [("logging.wandb", "wandb", cfg.wandb is not None),
            ("logging.mlflow", "mlflow", cfg.mlflow is not None),
            ("logging.tensorboard", "tensorboard", cfg.tensorboard is True)]
    return [f"{field}: the {module} package is not installed (pip install 'm1rl[{_EXTRAS[module]}]')"
            for field, module, on in need if on and importlib.util.find_spec(module) is None]


def run_info() -> dict[str, Any]:
    """The toolkit's git commit (None outside a git checkout) and whether its tree had changes."""
    root = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"git_commit": None, "git_dirty": None}
    if not (root / ".git").exists():  # an installed copy, not a checkout
        return info
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if sha.returncode == 0:
            info["git_commit"] = sha.stdout.strip()
            st = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def split_record(record: dict) -> tuple[str, int, dict[str, float]]:
    """A record's step axis, step and numeric metrics (booleans as 0/1)."""
    if record.get("kind") == "warmup":
        axis, step = WARMUP_STEP, int(record["warmup_step"])
    else:
        axis, step = STEP, int(record["step"])
    values = {k: float(v) for k, v in record.items()
              if k not in _BOOKKEEPING and isinstance(v, (int, float))}
    return axis, step, values


class Sink(Protocol):
    def log(self, axis: str, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """One event directory per step axis: ``tensorboard/`` (RL steps) and ``tensorboard/warmup``,
    so that purging the redone steps of one axis on resume leaves the other alone."""

    def __init__(self, root: Path, config: dict, first_step: dict[str, int]):
        from torch.utils.tensorboard import SummaryWriter

        self._make = lambda axis: SummaryWriter(
            str(root / ("warmup" if axis == WARMUP_STEP else "")), purge_step=first_step[axis])
        self._writers: dict[str, Any] = {STEP: self._make(STEP)}
        text = json.dumps(config, indent=2)
        self._writers[STEP].add_text("run/config", "```\n" + text + "\n```", global_step=0)

    def log(self, axis: str, step: int, values: dict[str, float]) -> None:
        if axis not in self._writers:
            self._writers[axis] = self._make(axis)
        w = self._writers[axis]
        for name, v in values.items():
            w.add_scalar(name, v, global_step=step)
        w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


class WandbSink:
    def __init__(self, cfg: WandbConfig, run_dir: Path, run_name: str, config: dict,
                 run_id: str | None):
        wandb = import_optional("wandb", "logging.wandb")
        kw: dict[str, Any] = dict(project=cfg.project, entity=cfg.entity, name=cfg.name or run_name,
                                  group=cfg.group, tags=list(cfg.tags) or None, dir=str(run_dir),
                                  config=config, id=run_id, resume="allow" if run_id else None)
        if cfg.mode is not None:
            kw["mode"] = cfg.mode
        self.run = wandb.init(**kw)
        self.id = self.run.id
        for axis in (STEP, WARMUP_STEP):
            self.run.define_metric(axis)
        self.run.define_metric("warmup/*", step_metric=WARMUP_STEP)
        self.run.define_metric("*", step_metric=STEP)

    def log(self, axis: str, step: int, values: dict[str, float]) -> None:
        self.run.log({**values, axis: step})

    def close(self) -> None:
        self.run.finish()


class MLflowSink:
    """Through an ``MlflowClient`` for the configured URI (no process-wide MLflow state)."""

    def __init__(self, cfg: MLflowConfig, run_name: str, config: dict, run_id: str | None):
        import_optional("mlflow", "logging.mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=cfg.tracking_uri)
        if run_id is None:
            exp = self.client.get_experiment_by_name(cfg.experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(cfg.experiment)
            run = self.client.create_run(exp_id, run_name=cfg.run_name or run_name,
                                         tags={"git_commit": str(config.get("git_commit"))})
            run_id = run.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in _flatten(config["recipe"]).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            self.client.log_dict(run_id, config, "run_config.json")
        self.id = run_id

    def log(self, axis: str, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def close(self) -> None:
        self.client.set_terminated(self.id)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    """``log(record)`` writes the record to metrics.jsonl and to every sink. ``point`` is where
    the run continues (a fresh run: ``ResumePoint()``): records of an earlier attempt past it
    are dropped or purged, and a resumed run carries on the W&B and MLflow runs it had."""

    def __init__(self, run_dir: Path, recipe: Recipe, point: ResumePoint):
        self.dir = Path(run_dir)
        cfg = recipe.logging
        first_step = point.first_steps()
        self.jsonl = MetricsWriter(self.dir / "metrics.jsonl", keep=point.keeps)
        self.config = {"recipe": recipe.model_dump(mode="json"), **run_info()}
        (self.dir / "run_info.json").write_text(json.dumps(
            {k: v for k, v in self.config.items() if k != "recipe"}, indent=2))
        ids_file = self.dir / "tracking.json"
        ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
        if point == ResumePoint():
            ids = {}  # a fresh start in this directory starts new W&B / MLflow runs
        self.sinks: list[Sink] = []
        try:
            if tensorboard_enabled(cfg):
                import_optional("tensorboard", "logging.tensorboard")
                self.sinks.append(TensorBoardSink(self.dir / "tensorboard", self.config, first_step))
            if cfg.wandb is not None:
                wb = WandbSink(cfg.wandb, self.dir, recipe.run.name, self.config, ids.get("wandb"))
                ids["wandb"] = wb.id
                self.sinks.append(wb)
            if cfg.mlflow is not None:
                ml = MLflowSink(cfg.mlflow, recipe.run.name, self.config, ids.get("mlflow"))
                ids["mlflow"] = ml.id
                self.sinks.append(ml)
        except BaseException:
            self.close()
            raise
        ids_file.write_text(json.dumps(ids))

    def log(self, record: dict) -> None:
        self.jsonl.log(record)
        axis, step, values = split_record(record)
        for sink in self.sinks:
            sink.log(axis, step, values)

    def close(self) -> None:
        self.jsonl.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []
