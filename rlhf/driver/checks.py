"""What ``rlhf validate`` checks beyond the recipe's types: everything ``rlhf train`` would
otherwise stop on later, found with the loaders the run itself uses (so the messages are the
same): data files and directories that give no rows, columns named in ``columns`` or needed by
the run (a prompt, the warm-up's ``solution``, the route field) that are missing, chat prompts
meeting a tokenizer without a chat template, a model without stop tokens, a tracking sink
without its package. Notes are facts worth seeing that are not errors (the stop tokens found,
sampling settings of generation_config.json that the recipe replaces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhf.config import Recipe, check_resources
from rlhf.driver.data import DataError, load_source, tokenize_prompts
from rlhf.driver.tracking import logging_problems
from rollout.base import model_stop_ids

# generation_config.json sampling fields and the recipe field that decides each instead
_SAMPLING = {"temperature": "rollout.temperature", "top_p": "rollout.top_p",
             "top_k": "rollout.top_k", "min_p": "rollout.min_p"}


def check_inputs(recipe: Recipe) -> tuple[list[str], list[str]]:
    """(errors, notes) for a recipe that parsed."""
    errors = check_resources(recipe) + logging_problems(recipe.logging)
    if errors:
        return errors, []
    notes: list[str] = []
    tokenizer = _tokenizer(recipe)
    if recipe.model.path is not None:
        errors += _model_problems(recipe, notes)
    for which in ("train", "eval", "warmup"):
        if getattr(recipe.data, which) is None:
            continue
        field = f"data.{which}"
        try:
            ds = load_source(getattr(recipe.data, which), field)
            ds = tokenize_prompts(ds, tokenizer, recipe.data.prompt_format, field)
        except DataError as exc:
            errors.append(str(exc))
            continue
        cols = ds.column_names
        if which != "warmup" and not recipe.rewards.verifiers and recipe.rewards.route_field not in cols:
            errors.append(f"{field}: no {recipe.rewards.route_field!r} column to route samples "
                          f"to their verifier and rewards.verifiers is empty; columns found: "
                          f"{', '.join(cols)} (list verifiers in rewards.verifiers, or map a "
                          f"column with {field}.columns: {{{recipe.rewards.route_field}: NAME}})")
        warm_src = "warmup" if recipe.data.warmup is not None else "train"
        if recipe.warmup.steps and which == warm_src and "solution" not in cols:
            errors.append(f"{field}: warm-up (warmup.steps={recipe.warmup.steps}) needs a "
                          f"`solution` column; columns found: {', '.join(cols)} (map one with "
                          f"{field}.columns: {{solution: NAME}})")
    return errors, notes


def _tokenizer(recipe: Recipe) -> Any:
    if recipe.model.path is None:
        from rlhf.models import build_char_tokenizer

        return build_char_tokenizer()  # what model.build writes
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(recipe.model.path)


def _model_problems(recipe: Recipe, notes: list[str]) -> list[str]:
    path = str(recipe.model.path)
    stop = model_stop_ids(path)
    if not stop:
        return [f"model.path: {path!r} names no eos_token_id in config.json or "
                "generation_config.json: generations would never stop before max_new_tokens"]
    notes.append(f"model stops at token ids {stop} (eos_token_id of generation_config.json "
                 "and config.json), on both engines")
    gen = Path(path, "generation_config.json")
    if gen.exists():
        cfg = json.loads(gen.read_text())
        ro = recipe.rollout
        ours = {"temperature": ro.temperature, "top_p": ro.top_p, "top_k": ro.top_k,
                "min_p": ro.min_p}
        differ = [f"{k}={cfg[k]} ({field}={ours[k]})" for k, field in _SAMPLING.items()
                  if k in cfg and cfg[k] != ours[k]]
        if differ:
            notes.append("generation_config.json suggests " + ", ".join(differ) + "; the "
                         "recipe's rollout settings are what both engines sample with")
    return []
