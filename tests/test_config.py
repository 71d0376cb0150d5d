"""Recipes load into typed configs; bad input gives every error with its key path."""

from pathlib import Path

import pytest
import yaml

from rlhf.config import CispoLoss, GrpoLoss, RecipeError, check_resources, load_recipe, parse_recipe
from rollout.engines import HFEngineConfig, VLLMEngineConfig

pytestmark = pytest.mark.unit
ALL_YAML = sorted((Path(__file__).parent.parent / "recipes").rglob("*.yaml"))
SWEEPS = [p for p in ALL_YAML if "axes" in (yaml.safe_load(p.read_text()) or {})]
RECIPES = [p for p in ALL_YAML if p not in SWEEPS]


def test_there_are_recipes():
    assert len(RECIPES) >= 1


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_recipe_loads_and_has_a_header(path):
    recipe = load_recipe(path)
    assert recipe.run.steps >= 0
    head = path.read_text().splitlines()[:3]
    assert head and head[0].startswith("#"), f"{path} must start with a header comment"
    assert "rlhf train" in path.read_text(), f"{path} header must give the launch command"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_sweep_builds_valid_recipes_and_has_a_header(path):
    from rlhf.sweep.spec import build_recipes, load_spec

    recipes = build_recipes(load_spec(path), path, check_files=False)
    assert len(recipes) >= 2
    assert path.read_text().startswith("#") and "rlhf sweep" in path.read_text()


def _minimal(**extra):
    data = {"model": {"build": {}}, "data": {"train": {"type": "synthetic"}}}
    data.update(extra)
    return data


def test_loss_is_picked_by_type_with_m1_defaults():
    r = parse_recipe(_minimal())
    assert isinstance(r.loss, CispoLoss) and r.loss.eps_low is None
    assert r.train.optim.betas == (0.9, 0.95) and r.train.optim.eps == 1e-15
    r = parse_recipe(_minimal(loss={"type": "grpo", "kl_coef": 0.01}))
    assert isinstance(r.loss, GrpoLoss) and r.loss.agg == "seq-mean"


def test_all_errors_at_once_with_paths_and_suggestions():
    bad = _minimal(loss={"type": "cispo", "eps_hgh": 0.3},
                   rollout={"temperature": "hot", "samples_per_prompt": 0},
                   trian={"mini_batches": 16})
    with pytest.raises(RecipeError) as exc:
        parse_recipe(bad)
    errs = exc.value.errors
    text = "\n".join(errs)
    assert len(errs) == 4, text
    assert "loss.eps_hgh: unknown key; did you mean 'loss.eps_high'?" in text
    assert "trian: unknown key; did you mean 'train'?" in text
    assert "rollout.temperature" in text and "'hot'" in text
    assert "rollout.samples_per_prompt" in text and "greater than or equal to 1" in text


def test_unknown_loss_type_names_the_choices():
    with pytest.raises(RecipeError, match="'cispo', 'grpo', 'dapo' or 'ppo'|cispo.*grpo.*dapo.*ppo"):
        parse_recipe(_minimal(loss={"type": "reinforce"}))


def test_dotted_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(_minimal()))
    r = load_recipe(p, ["loss.eps_high=0.3", "train.mini_batches=16", "loss.eps_low=null",
                        "run.name=x"])
    assert r.loss.eps_high == 0.3 and r.train.mini_batches == 16 and r.run.name == "x"
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(p, ["loss.eps_high"])


def test_model_source_must_be_exactly_one():
    with pytest.raises(RecipeError, match="exactly one of model.path"):
        parse_recipe({"model": {}, "data": {"train": {"type": "synthetic"}}})


def test_missing_model_dir_and_empty_data_file(tmp_path):
    empty = tmp_path / "prompts.jsonl"
    empty.write_text("")
    r = parse_recipe({"model": {"path": str(tmp_path / "nope")},
                      "data": {"train": {"type": "file", "path": str(empty)},
                               "eval": {"type": "file", "path": str(tmp_path / "gone.jsonl")}}})
    errs = check_resources(r)
    assert any("model.path" in e and "does not exist" in e for e in errs)
    assert any("data.train.path" in e and "is empty" in e for e in errs)
    assert any("data.eval.path" in e and "does not exist" in e for e in errs)


def test_missing_recipe_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)


def test_length_windows_and_context_must_fit():
    windows = {"windows": [64, 128]}
    with pytest.raises(RecipeError, match="windows go up to 128 tokens but rollout.max_new_tokens is 100"):
        parse_recipe(_minimal(rollout={"max_new_tokens": 100, "length_windows": windows}))
    vllm = {"type": "vllm", "max_model_len": 128}
    with pytest.raises(RecipeError, match="rollout.engine.max_model_len=128 leaves no room for a "
                                          "prompt and 128"):
        parse_recipe(_minimal(rollout={"max_new_tokens": 128, "length_windows": windows,
                                       "engine": vllm}))
    r = parse_recipe(_minimal(rollout={"max_new_tokens": 128, "length_windows": windows,
                                       "engine": {**vllm, "max_model_len": 200}}))
    assert r.rollout.engine.max_model_len == 200


def test_engine_is_a_section_picked_by_type():
    r = parse_recipe(_minimal())
    assert r.rollout.engine == HFEngineConfig() and r.rollout.engine.max_batch_rows == 256
    r = parse_recipe(_minimal(rollout={"engine": "vllm"}))  # a name is the section's defaults
    assert r.rollout.engine == VLLMEngineConfig()
    r = parse_recipe(_minimal(rollout={"engine": {"type": "vllm", "gpu_memory_utilization": 0.3,
                                                  "decode_time": True}}))
    assert (r.rollout.engine.gpu_memory_utilization, r.rollout.engine.decode_time) == (0.3, "abort")
    assert VLLMEngineConfig(decode_time=False).decode_time == "off"  # one meaning of a boolean
    with pytest.raises(RecipeError, match="'hf', 'vllm'"):
        parse_recipe(_minimal(rollout={"engine": "sglang"}))
    with pytest.raises(RecipeError, match="'off', 'abort' or 'processor'"):
        parse_recipe(_minimal(rollout={"engine": {"type": "vllm", "decode_time": "sometimes"}}))


def test_engine_options_in_their_old_places_say_where_they_went():
    with pytest.raises(RecipeError) as exc:
        parse_recipe(_minimal(rollout={"engine": "vllm", "gpu_memory_utilization": 0.3,
                                       "max_batch_rows": 8, "repetition_stop": {"decode_time": True}},
                              trian={}))
    assert sorted(exc.value.errors) == [
        "rollout.gpu_memory_utilization: moved to rollout.engine.gpu_memory_utilization, an "
        "option of the vllm engine (engine: {type: vllm, gpu_memory_utilization: ...})",
        "rollout.max_batch_rows: moved to rollout.engine.max_batch_rows, an option of the hf "
        "engine (engine: {type: hf, max_batch_rows: ...})",
        "rollout.repetition_stop.decode_time: moved to rollout.engine.decode_time, an option of "
        "the vllm engine (engine: {type: vllm, decode_time: ...})",
        "trian: unknown key; did you mean 'train'? (valid keys: advantages, data, logging, loss, model, "
        "placement, precision, rewards, rollout, run, train, warmup)"]  # every error at once
    # the tag of the variant (vllm) is not part of the key path
    with pytest.raises(RecipeError, match=r"rollout.engine.max_batch_rows: not an option of the "
                                          r"vllm engine but of the hf engine"):
        parse_recipe(_minimal(rollout={"engine": {"type": "vllm", "max_batch_rows": 8}}))


def test_built_model_pads_the_vocabulary(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from rlhf.models import build_tiny_model

    out = build_tiny_model(tmp_path / "m", hidden_size=16, num_layers=1, num_heads=2,
                           num_kv_heads=1, vocab_size=1000, max_position_embeddings=4096)
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.vocab_size == 1000 and cfg.max_position_embeddings == 4096
    assert AutoTokenizer.from_pretrained(out).vocab_size == 262  # ids 262.. decode to nothing
    with pytest.raises(ValueError, match="vocab_size=100 is smaller than the tokenizer's 262"):
        build_tiny_model(tmp_path / "n", vocab_size=100)
