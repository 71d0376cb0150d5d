"""A sweep file: a base recipe, overrides shared by every run, and axes whose product is the grid.

    name: countdown_losses
    base: ../countdown.yaml          # relative to this file
    output_dir: runs/sweeps          # the sweep writes to output_dir/name
    overrides: [run.steps=40]        # applied to every run, before the axes
    axes:
      loss: [{type: cispo}, {type: dapo, eps_high: 0.28}, {type: grpo}]   # a mapping replaces the section
      run.seed: [0, 1, 2]
    seed_axis: run.seed              # runs that differ only here are seeds of one arm
    reference: {loss: dapo}          # threshold = this arm's final mean held-out pass rate

An *arm* is one combination of the non-seed axes; a *run* is an arm at one seed. Every run's
recipe is built and validated before anything runs (:func:`validate`), with every error at once.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlhf.config import (
    Recipe,
    RecipeError,
    apply_override,
    check_resources,
    parse_recipe,
    resolve_paths,
)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Sweep name; outputs go to output_dir/name.")
    base: str = Field(description="The base recipe (relative to the sweep file).")
    output_dir: str = Field("runs/sweeps", description="Where the sweep directory is made.")
    overrides: list[str] = Field(default_factory=list, description="key=value for every run.")
    axes: dict[str, list[Any]] = Field(description="Dotted recipe key -> values; the grid is their product.")
    seed_axis: str | None = Field("run.seed", description="The axis whose runs are seeds of one arm.")
    reference: dict[str, Any] | None = Field(
        None, description="Axis values (by label) of the arm whose final mean pass rate is the threshold.")
    threshold: float | None = Field(None, ge=0.0, le=1.0,
                                    description="Pass-rate threshold for steps-to-threshold (overrides reference).")
    parallel: int = Field(1, ge=1, description="Runs at once (1 on a 2-core machine).")
    stagger_s: float = Field(0.0, ge=0.0, description="Seconds between starting two runs (GPU runs "
                             "sharing a device: vLLM sizes its KV cache from the free memory it "
                             "sees at start, so engines must not start at the same moment).")
    retries: int = Field(0, ge=0, description="Times a failed run is started again in the same sweep "
                         "(it resumes from its last checkpoint). For runs sharing a GPU: vLLM's "
                         "start fails when another run frees memory while it profiles.")

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, vals in v.items() if not vals]
        if not v or empty:
            raise ValueError(f"every axis needs at least one value (empty: {empty or 'no axes'})")
        return v


def label(value: Any) -> str:
    """A value's name in run names and tables: a mapping is named by its ``type`` when it has
    one, else by its items."""
    if isinstance(value, dict):
        if "type" in value:
            rest = [f"{k}{v}" for k, v in value.items() if k != "type"]
            return "_".join([str(value["type"]), *rest])
        return "_".join(f"{k}{v}" for k, v in value.items())
    return str(value)


@dataclass(frozen=True)
class RunSpec:
    arm: str            # e.g. "loss=cispo,train.mini_batches=16"
    seed: Any
    name: str           # the run's directory name
    overrides: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)


def expand(spec: SweepSpec) -> list[RunSpec]:
    """Every run of the grid, seed-major: every arm at the first seed (in axis order), then every
    arm at the second, ..., so a sweep stopped part-way (or given limited time) has all its arms."""
    keys = [k for k in spec.axes if k != spec.seed_axis]
    if spec.seed_axis in spec.axes:
        keys.append(spec.seed_axis)
    order = keys[-1:] + keys[:-1] if spec.seed_axis in spec.axes else keys
    runs = []
    for ordered in itertools.product(*(spec.axes[k] for k in order)):
        combo = [dict(zip(order, ordered))[k] for k in keys]
        labels = {k: label(v) for k, v in zip(keys, combo)}
        arm = ",".join(f"{k}={labels[k]}" for k in keys if k != spec.seed_axis) or "base"
        seed = labels.get(spec.seed_axis or "", "-")
        ovs = tuple(spec.overrides) + tuple(
            f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in zip(keys, combo))
        name = "-".join([spec.name, *(labels[k] for k in keys if k != spec.seed_axis)] +
                        ([f"s{seed}"] if spec.seed_axis in spec.axes else []))
        runs.append(RunSpec(arm, seed, name.replace("/", "_"), ovs, labels))
    return runs


def load_spec(path: str | Path) -> SweepSpec:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(str(p), [f"sweep file {str(p)!r} does not exist"])
    try:
        data = yaml.safe_load(p.read_text()) or {}
        return SweepSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise RecipeError(str(p), [f"not valid YAML: {exc}"]) from None
    except ValidationError as exc:
        raise RecipeError(str(p), [f"{'.'.join(map(str, e['loc'])) or 'sweep'}: {e['msg']}"
                                   for e in exc.errors()]) from None


def sweep_dir(spec: SweepSpec) -> Path:
    return Path(spec.output_dir) / spec.name


def build_recipes(spec: SweepSpec, sweep_path: str | Path, cli_overrides: list[str] | None = None,
                  check_files: bool = True) -> dict[str, Recipe]:
    """Every run's recipe, by run name, written to ``runs/<name>`` under the sweep directory;
    raises one :class:`RecipeError` with every problem of every run (nothing has run yet).
    ``cli_overrides`` apply to every run after the sweep's own (paths in them are relative to
    the working directory, as with ``rlhf train``). ``check_files``: also check that models
    and data files exist (off: only the recipes' own validation)."""
    sweep_path = Path(sweep_path)
    base = (sweep_path.parent / spec.base).resolve()
    if not base.is_file():
        raise RecipeError(str(sweep_path), [f"base: recipe {str(base)!r} does not exist"])
    base_data = yaml.safe_load(base.read_text()) or {}
    out = sweep_dir(spec) / "runs"
    recipes: dict[str, Recipe] = {}
    errors: list[str] = []
    cli = tuple(cli_overrides or ())
    if spec.seed_axis is not None and spec.seed_axis not in spec.axes:
        errors.append(f"seed_axis: {spec.seed_axis!r} is not one of the axes ({', '.join(spec.axes)}); "
                      "set seed_axis: null for a sweep without seeds")
    for run in expand(spec):
        data = copy.deepcopy(base_data)
        try:
            for ov in (*run.overrides, *cli, f"run.output_dir={out.resolve()}", f"run.name={run.name}"):
                apply_override(data, ov)
            recipe = resolve_paths(parse_recipe(data, run.name), base.parent,
                                   [ov.split("=", 1)[0].strip() for ov in cli])
        except RecipeError as exc:
            errors += [f"{run.name}: {e}" for e in exc.errors]
            continue
        if check_files:
            errors += [f"{run.name}: {e}" for e in check_resources(recipe, base.parent)]
        recipes[run.name] = recipe
    errors += _reference_errors(spec)
    if errors:
        raise RecipeError(str(sweep_path), errors)
    return recipes


def _reference_errors(spec: SweepSpec) -> list[str]:
    if spec.reference is None:
        return []
    arms = {r.arm for r in expand(spec)}
    want = reference_arm(spec)
    if want in arms:
        return []
    return [f"reference: {spec.reference} names no arm; arms are: {', '.join(sorted(arms))}"]


def reference_arm(spec: SweepSpec) -> str | None:
    """The arm label the reference mapping names (axes not named take their only value)."""
    if spec.reference is None:
        return None
    parts = []
    for key, values in spec.axes.items():
        if key == spec.seed_axis:
            continue
        if key in spec.reference:
            parts.append(f"{key}={label(spec.reference[key])}")
        elif len(values) == 1:
            parts.append(f"{key}={label(values[0])}")
        else:
            parts.append(f"{key}=?")
    return ",".join(parts) or "base"
