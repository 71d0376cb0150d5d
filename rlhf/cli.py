"""``rlhf`` command line: train, validate, eval, export, sweep, recipe-fields, build-model, mismatch."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rlhf.config import Recipe, RecipeError, check_resources, load_recipe


def _load(args, deep: bool = False) -> Recipe:
    """The recipe, or exit 2 with every error. ``deep``: also load the data and the tokenizer
    the way the run will (rlhf/driver/checks.py); else only the cheap file checks."""
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    notes: list[str] = []
    if deep:
        from rlhf.driver.checks import check_inputs

        problems, notes = check_inputs(recipe)
    else:
        problems = check_resources(recipe)
    if problems:
        print(f"error: {args.recipe}: {len(problems)} error(s)\n" +
              "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        raise SystemExit(2)
    for note in notes:
        print(f"note: {note}")
    return recipe


def cmd_validate(args) -> int:
    recipe = _load(args, deep=True)
    print(f"{args.recipe}: ok (loss={recipe.loss.type}, engine={recipe.rollout.engine.type}, "
          f"steps={recipe.run.steps})")
    return 0


class _TokenAuthNotice(logging.Filter):
    """Drops Ray's notice, at every local start, that token authentication is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray")


def local_ray_auth(address: str | None) -> None:
    """A local Ray instance (no --address, no RAY_ADDRESS) keeps Ray's default, token
    authentication (a token in ~/.ray/auth_token, made on first use); only Ray's notice saying
    so is kept off the console. ``RAY_AUTH_MODE=disabled`` opts out, as Ray documents."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
            _TokenAuthNotice())


def cmd_train(args) -> int:
    recipe = _load(args)
    local_ray_auth(args.address)
    from rewards import VerifierUnavailable
    from rlhf.driver import train
    from rlhf.driver.checkpoint import CheckpointDirError
    from rlhf.driver.data import DataError
    from rlhf.driver.resume import RecipeChanged
    from rlhf.driver.scoring import VerifierErrors

    try:
        summary = train(recipe, address=args.address, allow_recipe_change=args.allow_recipe_change)
    except (RecipeChanged, DataError, CheckpointDirError) as exc:  # raised before any work
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (VerifierUnavailable, VerifierErrors):
        return 3  # the run printed the reason and where its metrics and checkpoint are
    print("summary:", summary)
    from rlhf.driver.evaluation import before_after_line

    line = before_after_line(summary)
    if line:
        print(line)
    return 0


def cmd_mismatch(args) -> int:
    from rlhf.mismatch import command

    return command(args)


def cmd_build_model(args) -> int:
    from rlhf.models import build_tiny_model

    out = build_tiny_model(args.out, hidden_size=args.hidden_size, num_layers=args.num_layers)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # Nothing is downloaded at run time: models are local directories and Hub datasets come
    # from the local cache (set HF_HUB_OFFLINE=0 to let datasets and transformers download).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Every actor loads the weights (transformers draws a bar each time); HF_ variables reach
    # every actor (rlhf/driver/placement.py), so the console keeps only the run's own bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="rlhf", description="M1-style RL post-training")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn, helptext in (("train", cmd_train, "train a recipe"),
                               ("validate", cmd_validate, "check a recipe and print every error")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("recipe")
        sp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. loss.eps_high=0.3")
        sp.set_defaults(fn=fn)
    sub.choices["train"].add_argument("--address", default=None,
                                      help="existing Ray cluster (default: start a local one)")
    sub.choices["train"].add_argument(
        "--allow-recipe-change", action="store_true",
        help="resume a checkpoint even though the recipe changed (the changes are logged)")
    from rlhf.driver.eval_command import add_parser as add_eval_parser

    add_eval_parser(sub, _load)
    from rlhf.driver.export import add_parser as add_export_parser

    add_export_parser(sub)
    from rlhf.sweep.command import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    from rlhf.recipe_fields import add_parser as add_fields_parser

    add_fields_parser(sub)
    bm = sub.add_parser("build-model", help="write a tiny Qwen2 model + tokenizer directory")
    bm.add_argument("out")
    bm.add_argument("--hidden-size", type=int, default=128)
    bm.add_argument("--num-layers", type=int, default=4)
    bm.set_defaults(fn=cmd_build_model)
    mm = sub.add_parser("mismatch", help="train/inference mismatch, bf16 vs FP32 head (GPU, vLLM)")
    mm.add_argument("recipe")
    mm.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.path=/ckpt")
    mm.add_argument("--prompts", type=int, default=64)
    mm.add_argument("--new-tokens", type=int, default=512)
    mm.add_argument("--out", default=None, help="also write the rows as JSON")
    mm.set_defaults(fn=cmd_mismatch)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # Ctrl-C: a run has said where it stopped and how to resume
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
