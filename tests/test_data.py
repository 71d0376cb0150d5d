"""Real models and real data (rlhf/driver/data.py, rlhf/driver/checks.py): chat templates, column
mapping, every source `datasets` reads (files, save_to_disk directories, Hub datasets from the
local cache), relative paths, what `rlhf validate` catches, and stop tokens from
generation_config.json / list-valued eos_token_id on the transformers engine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

from rlhf.config import DataConfig, load_recipe, parse_recipe
from rlhf.driver.data import DataError, load_prompts, load_source, tokenize_prompts
from rlhf.models import build_char_tokenizer, build_tiny_model

ROOT = Path(__file__).parent.parent
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
ROWS = [{"question": f"What is {i} + {i}?", "solution": str(2 * i), "topic": "sum"} for i in range(6)]


def _rlhf(*args, cwd=ROOT, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "rlhf.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _chat_tokenizer():
    tok = build_char_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


def _data(**kw) -> DataConfig:
    return parse_recipe({"model": {"build": {}}, "data": kw}).data


def _chat_model(d: Path) -> Path:
    """A tiny model whose tokenizer has a chat template, with Llama-3-style stop tokens: a list
    in config.json and another list in generation_config.json."""
    build_tiny_model(d, hidden_size=32, num_layers=2)
    tok = _chat_tokenizer()
    tok.save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["eos_token_id"] = [tok.eos_token_id, tok.pad_token_id]
    (d / "config.json").write_text(json.dumps(cfg))
    gen = json.loads((d / "generation_config.json").read_text())
    gen.update(eos_token_id=[tok.convert_tokens_to_ids("</think>"), tok.eos_token_id],
               temperature=0.6, top_p=0.9)
    (d / "generation_config.json").write_text(json.dumps(gen))
    return d


@pytest.mark.integration
def test_chat_dataset_with_renamed_columns_trains_a_step_through_the_cli(tmp_path):
    """A recipe file next to its data and model (relative paths), chat prompts in a renamed
    `conversation` column, the answer the verifier reads in `solution`; run from elsewhere."""
    recipe_dir = tmp_path / "project"
    _chat_model(recipe_dir / "model")
    rows = [{"conversation": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": r["question"]}],
             "solution": r["solution"]} for r in ROWS]
    (recipe_dir / "data").mkdir()
    (recipe_dir / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "run": {"name": "chat", "output_dir": str(tmp_path / "runs"), "steps": 1, "plot": False},
        "model": {"path": "model"},
        "data": {"train": {"type": "file", "path": "data/train.jsonl",
                           "columns": {"messages": "conversation", "answer": "solution"}},
                 "prompts_per_step": 2},
        "rollout": {"samples_per_prompt": 2, "max_new_tokens": 8},
        "rewards": {"verifiers": [{"name": "tests.plugins:reads_answer"}]},
        "train": {"mini_batches": 1}, "logging": {"tensorboard": False}}
    (recipe_dir / "chat.yaml").write_text("# chat recipe: rlhf train chat.yaml\n" + yaml.safe_dump(recipe))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _rlhf("validate", str(recipe_dir / "chat.yaml"), cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    eot = build_char_tokenizer().convert_tokens_to_ids("</think>")
    assert f"model stops at token ids [{eot}, 2, 0]" in out.stdout
    assert "generation_config.json suggests temperature=0.6 (rollout.temperature=1.0), " \
           "top_p=0.9 (rollout.top_p=1.0)" in out.stdout
    out = _rlhf("train", str(recipe_dir / "chat.yaml"), cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "runs" / "chat" / "metrics.jsonl").read_text().splitlines()]
    (step,) = [r for r in rows if r["kind"] == "train"]
    assert step["step"] == 1 and step["verifier/errors"] == 0  # every sample found its answer
    saved = json.loads((tmp_path / "runs" / "chat" / "recipe.json").read_text())
    assert saved["model"]["path"] == str(recipe_dir / "model")
    assert saved["data"]["train"]["path"] == str(recipe_dir / "data" / "train.jsonl")


@pytest.mark.unit
def test_chat_prompts_are_the_templates_rendering_with_the_generation_prompt():
    tok = _chat_tokenizer()
    ds = datasets.Dataset.from_list([
        {"messages": [{"role": "user", "content": "hi"}], "answer": "1"}])
    out = tokenize_prompts(ds, tok, "auto", "data.train")
    want = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                   tokenize=False)
    assert want == "<|user|>hi\n<|assistant|>"
    assert tok.decode(out[0]["prompt_ids"]) == want and out[0]["answer"] == "1"
    pair = datasets.Dataset.from_list([{"system": "S", "prompt": "P"}])  # system + prompt: chat
    assert tok.decode(tokenize_prompts(pair, tok, "auto")[0]["prompt_ids"]) == \
        "<|system|>S\n<|user|>P\n<|assistant|>"
    plain = datasets.Dataset.from_list([{"prompt": "P"}])
    assert tok.decode(tokenize_prompts(plain, tok, "auto")[0]["prompt_ids"]) == "P"  # raw text
    assert tok.decode(tokenize_prompts(plain, tok, "chat")[0]["prompt_ids"]) == "<|user|>P\n<|assistant|>"


@pytest.mark.unit
def test_chat_prompt_errors_name_the_field_and_the_way_out():
    msgs = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match=r"data.train: prompts in chat form .* need a tokenizer with "
                                        r"a chat template.*data.prompt_format: raw"):
        tokenize_prompts(msgs, build_char_tokenizer(), "auto", "data.train")
    with pytest.raises(DataError, match=r"data.eval has no `prompt` column \(the data has "
                                        r"`messages`.*columns found: messages"):
        tokenize_prompts(msgs, _chat_tokenizer(), "raw", "data.eval")
    answered = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "q"},
                                                         {"role": "assistant", "content": "a"}]}])
    with pytest.raises(DataError, match="ends with an assistant turn"):
        tokenize_prompts(answered, _chat_tokenizer(), "auto", "data.train")


@pytest.mark.unit
def test_every_file_format_and_saved_directories_give_the_same_rows(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_json(str(tmp_path / "p.jsonl"))
    (tmp_path / "p.json").write_text(json.dumps(ROWS))
    ds.to_parquet(str(tmp_path / "p.parquet"))
    ds.to_csv(str(tmp_path / "p.csv"), index=False)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(tmp_path / "dict"))
    cols = {"prompt": "question", "answer": "solution"}
    want = [{"prompt": r["question"], "answer": r["solution"], "topic": r["topic"]} for r in ROWS]
    for name in ("p.jsonl", "p.json", "p.parquet", "p.csv", "saved", "dict"):
        src = _data(train={"type": "file", "path": str(tmp_path / name), "columns": cols}).train
        got = load_source(src, "data.train")
        assert sorted(got.column_names) == ["answer", "prompt", "topic"], name
        assert [{k: str(v) for k, v in r.items()} for r in got] == want, name  # csv: 0 -> int
    test = _data(train={"type": "file", "path": str(tmp_path / "dict"), "split": "test",
                        "limit": 1}).train
    assert len(load_source(test)) == 1
    bad = _data(train={"type": "file", "path": str(tmp_path / "dict"), "split": "dev"}).train
    with pytest.raises(DataError, match=r"data.train.split: .* has no split 'dev' \(splits: train, test\)"):
        load_source(bad, "data.train")


@pytest.mark.unit
def test_a_mapped_column_replaces_a_field_of_the_same_name(tmp_path):
    rows = [{"prompt": "old", "question": "new", "answer": "x", "solution": "y"}]
    (tmp_path / "d.jsonl").write_text(json.dumps(rows[0]) + "\n")
    data = _data(train={"type": "file", "path": str(tmp_path / "d.jsonl"),
                        "columns": {"prompt": "question", "answer": "solution"}})
    got = load_prompts(data, "train", build_char_tokenizer())
    assert got[0]["prompt"] == "new" and got[0]["answer"] == "y"
    assert "question" not in got.column_names and "solution" not in got.column_names


def _cache_hub_dataset(cache: Path, repo_id: str, subset: str, splits: dict[str, list[dict]]):
    """Write what `datasets.load_dataset(repo_id, subset)` leaves in its cache after a download
    (the Hub's parquet files prepared as Arrow under <namespace>___<name>/<subset>/<version>/
    <commit>), without the Hub: the packaged parquet builder on local files."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

    namespace, name = repo_id.split("/")
    files = {}
    for split, rows in splits.items():
        files[split] = [str(cache.parent / f"{split}.parquet")]
        datasets.Dataset.from_list(rows).to_parquet(files[split][0])

    class Builder(Parquet):
        BUILDER_CONFIGS = [ParquetConfig(name=subset, data_files=DataFilesDict.from_patterns(files))]

    staging = cache.parent / "staging"
    Builder(cache_dir=str(staging), dataset_name=name, config_name=subset,
            hash="0123456789abcdef").download_and_prepare()
    cache.mkdir(parents=True, exist_ok=True)
    (staging / name).rename(cache / f"{namespace}___{name}")


@pytest.mark.unit
def test_a_hub_dataset_loads_offline_from_the_local_cache_through_validate(tmp_path):
    cache = tmp_path / "hf" / "datasets"
    _cache_hub_dataset(cache, "m1rl-test/tiny_math", "main",
                       {"train": ROWS, "test": ROWS[:2]})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"build": {"hidden_size": 32}},
        "data": {"train": {"type": "hub", "name": "m1rl-test/tiny_math", "subset": "main",
                           "split": "test", "columns": {"prompt": "question", "answer": "solution"}}},
        "rewards": {"verifiers": [{"name": "arithmetic"}]}}))
    env = {"HF_DATASETS_CACHE": str(cache)}
    out = _rlhf("validate", str(recipe), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    out = _rlhf("validate", str(recipe), "data.train.name=m1rl-test/not_cached", env=env)
    assert out.returncode == 2
    assert "data.train: dataset 'm1rl-test/not_cached', subset 'main' is not in the local " \
           "datasets cache" in out.stderr
    out = _rlhf("validate", str(recipe), "data.train.split=dev", env=env)
    assert out.returncode == 2 and "data.train: dataset 'm1rl-test/tiny_math'" in out.stderr
    assert "dev" in out.stderr


@pytest.mark.unit
def test_validate_catches_what_train_would_stop_on(tmp_path):
    (tmp_path / "header_only.csv").write_text("question,solution\n")
    datasets.Dataset.from_list(ROWS).select([]).to_parquet(str(tmp_path / "none.parquet"))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "ok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"build": {"hidden_size": 32}},
        "data": {"train": {"type": "file", "path": "header_only.csv"},
                 "eval": {"type": "file", "path": "none.parquet"},
                 "warmup": {"type": "file", "path": "empty_dir"}},
        "rewards": {"verifiers": [{"name": "arithmetic"}]}}))
    out = _rlhf("validate", str(recipe))
    assert out.returncode == 2
    assert f"data.train: {str(tmp_path / 'header_only.csv')!r} has no rows" in out.stderr
    assert f"data.eval: {str(tmp_path / 'none.parquet')!r} has no rows" in out.stderr
    assert f"data.warmup.path: {str(tmp_path / 'empty_dir')!r} is an empty directory" in out.stderr
    out = _rlhf("validate", str(recipe), "data.eval=null", "data.warmup=null", "warmup.steps=5",
                "rewards.verifiers=[]",
                f"data.train={{type: file, path: {tmp_path / 'ok.jsonl'}, columns: {{prompt: query}}}}")
    assert out.returncode == 2
    assert f"data.train: {str(tmp_path / 'ok.jsonl')!r} has no column 'query' (named in " \
           "data.train.columns; columns found: question, solution, topic)" in out.stderr
    out = _rlhf("validate", str(recipe), "data.eval=null", "data.warmup=null", "warmup.steps=5",
                "rewards.verifiers=[]",
                f"data.train={{type: file, path: {tmp_path / 'ok.jsonl'}, columns: {{prompt: question}}}}")
    assert out.returncode == 2
    assert "data.train: no 'verifier' column to route samples" in out.stderr
    assert "needs a `solution` column" not in out.stderr  # it has one
    out = _rlhf("validate", str(recipe), "data.eval=null", "data.warmup=null", "warmup.steps=5",
                f"data.train={{type: file, path: {tmp_path / 'ok.jsonl'}, columns: {{prompt: question, answer: solution}}}}")
    assert out.returncode == 2
    assert "data.train: warm-up (warmup.steps=5) needs a `solution` column; columns found: " \
           "prompt, answer, topic" in out.stderr


@pytest.mark.unit
def test_relative_paths_resolve_against_the_recipe_file_and_overrides_against_the_shell(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    p = tmp_path / "recipes" / "r.yaml"
    p.write_text(yaml.safe_dump({"model": {"path": "../models/m"},
                                 "data": {"train": {"type": "file", "path": "d/train.jsonl"},
                                          "eval": {"type": "file", "path": "/abs/eval.jsonl"}},
                                 "run": {"output_dir": "runs"}}))
    r = load_recipe(p)
    assert r.model.path == str(tmp_path / "models" / "m")
    assert r.data.train.path == str(tmp_path / "recipes" / "d" / "train.jsonl")
    assert r.data.eval.path == "/abs/eval.jsonl" and r.run.output_dir == "runs"
    monkeypatch.chdir(tmp_path)
    r = load_recipe(p, ["data.train.path=mine.jsonl", "model={path: here}"])
    assert r.data.train.path == str(tmp_path / "mine.jsonl") and r.model.path == str(tmp_path / "here")


@pytest.mark.unit
def test_transformers_engine_stops_at_every_eos_of_config_and_generation_config(tmp_path):
    """Llama-3 style: eos_token_id a list in config.json, generation_config.json adding more;
    greedy decoding stops at the first of any of them."""
    from rollout.base import SamplingConfig, model_stop_ids
    from rollout.hf_engine import HFEngine

    d = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=2, seed=3)
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=12, repetition_window=0)
    free = HFEngine(str(d)).generate([[5, 6, 7]], greedy)[0].token_ids
    stop = free[4]
    cfg = json.loads((d / "config.json").read_text())
    cfg["eos_token_id"] = [cfg["eos_token_id"], 1]
    (d / "config.json").write_text(json.dumps(cfg))
    gen = json.loads((d / "generation_config.json").read_text())
    gen["eos_token_id"] = [stop]
    (d / "generation_config.json").write_text(json.dumps(gen))
    assert model_stop_ids(str(d)) == [stop, 2, 1]
    (c,) = HFEngine(str(d)).generate([[5, 6, 7]], greedy)
    first = free.index(stop)
    assert c.finish_reason == "stop" and c.token_ids == free[:first + 1]
