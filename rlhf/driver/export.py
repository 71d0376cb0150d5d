"""``rlhf export CHECKPOINT OUT_DIR``: a Hugging Face checkpoint (safetensors) from any step.

``CHECKPOINT`` is a step checkpoint (``checkpoints/step_NNNNNN/``) or a run directory (its latest
complete checkpoint). The run's ``recipe.json`` says which model the weights belong to
(``model.path`` or the tiny ``model.build`` kept in the run's ``init_model/``), whether LoRA
factors must be merged, and the training dtype the export is written in (``--dtype`` overrides
it). The learners' DCP shards are read into one state dict on CPU without a process group
(rlhf/learner/checkpoint.py: tensors only, no pickled objects run). Runs outside Ray; the output
loads with ``AutoModelForCausalLM.from_pretrained``. The run's ``final_model/`` is written by
:func:`write_hf` too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from rlhf.config import Recipe


def export(checkpoint: Path, out_dir: Path, dtype: str | None = None) -> Path:
    """Write ``out_dir`` (config, safetensors weights, tokenizer); the step checkpoint used."""
    from rlhf.config import parse_recipe
    from rlhf.driver.checkpoint import Checkpoints
    from rlhf.driver.eval_command import resolve_checkpoint
    from rlhf.models import prepare_model

    kind, ckpt = resolve_checkpoint(Path(checkpoint))
    if kind == "hf":
        raise ValueError(f"{checkpoint}: already a Hugging Face model directory (config.json); "
                         "export takes a step checkpoint or a run directory")
    run_dir = Path(Checkpoints.driver_state(ckpt).get("run_dir") or ckpt.parent.parent)
    recipe_file = run_dir / "recipe.json"
    if not recipe_file.exists():
        raise ValueError(f"{recipe_file}: missing; export needs the run's recipe to know the model")
    recipe = parse_recipe(json.loads(recipe_file.read_text()), str(recipe_file))
    write_hf(ckpt, recipe, prepare_model(recipe.model, run_dir / "init_model"), out_dir, dtype)
    return ckpt


def write_hf(ckpt: Path, recipe: Recipe, model_dir: str, out_dir: Path,
             dtype: str | None = None) -> None:
    """The step checkpoint ``ckpt``'s model (its DCP shards read on CPU, LoRA merged) as a
    Hugging Face directory built on ``model_dir``'s config and tokenizer, in ``dtype`` (default:
    the training dtype ``model.dtype``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf.learner.checkpoint import read_model
    from rlhf.learner.worker import _hf_names

    weights = _hf_names(read_model(ckpt), recipe.model.lora)
    torch_dtype = getattr(torch, dtype or recipe.model.dtype)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
    missing, unexpected = lm.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise ValueError(f"{ckpt}: weights do not match {model_dir}: missing "
                         f"{sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
    lm.to(torch_dtype).save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)


def add_parser(sub: Any) -> None:
    ex = sub.add_parser("export", help="write a Hugging Face checkpoint (safetensors) from a step")
    ex.add_argument("checkpoint", help="a step checkpoint or a run directory (its latest)")
    ex.add_argument("out_dir")
    ex.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                    help="weights dtype (default: the recipe's model.dtype)")

    def run(args: argparse.Namespace) -> int:
        try:
            ckpt = export(Path(args.checkpoint), Path(args.out_dir), args.dtype)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"exported {ckpt} -> {args.out_dir}")
        return 0

    ex.set_defaults(fn=run)
