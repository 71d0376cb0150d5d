"""Prompt datasets and the seeded, resumable prompt stream.

A data source (recipe ``data.train`` / ``data.eval`` / ``data.warmup``) becomes a
``datasets.Dataset`` of task dicts (``prompt`` or ``messages``, ``answer``, ``verifier``, ...
whatever the verifier needs), read by ``datasets`` (files, ``save_to_disk`` directories, Hub
datasets from the local cache), with the recipe's ``columns`` renamed to the fields they hold.
Prompts are tokenised once here, through the tokenizer's chat template for prompts in chat
form (``data.prompt_format``); the token ids then travel unchanged to the engine and the
learner. Every problem is a :class:`DataError` naming the recipe field.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rlhf.config import DataConfig, FileData, HubData, SyntheticData

_LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """A data source that cannot give prompts, with the recipe field it comes from."""


def load_source(src: SyntheticData | FileData | HubData, field: str = "data"):
    """The source as a ``datasets.Dataset`` with ``columns`` applied and ``limit`` rows at most;
    errors name ``field`` (e.g. ``data.train``), the file and the problem."""
    import datasets

    if isinstance(src, SyntheticData):
        from rewards.tasks import get_task

        rows = get_task(src.task).generate(src.size, src.difficulty, src.seed)
        return datasets.Dataset.from_list(rows)
    ds = _read_hub(src, field) if isinstance(src, HubData) else _read_file(src, field)
    where = f"{field}: {src.name!r}" if isinstance(src, HubData) else f"{field}: {src.path!r}"
    if src.limit:
        ds = ds.select(range(min(src.limit, len(ds))))
    if len(ds) == 0:
        raise DataError(f"{where} has no rows")
    missing = [c for c in src.columns.values() if c not in ds.column_names]
    if missing:
        raise DataError(f"{where} has no column {', '.join(map(repr, missing))} (named in "
                        f"{field}.columns; columns found: {', '.join(ds.column_names)})")
    renames = {col: fld for fld, col in src.columns.items() if col != fld}
    shadowed = [f for f in renames.values() if f in ds.column_names and f not in renames]
    return ds.remove_columns(shadowed).rename_columns(renames)


def _read_file(src: FileData, field: str):
    import datasets

    path = Path(src.path)
    if path.is_dir():
        if not any(path.iterdir()):
            raise DataError(f"{field}.path: {src.path!r} is an empty directory")
        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise DataError(f"{field}.path: {src.path!r} is not a directory written by "
                            f"datasets' save_to_disk ({exc})") from None
        if isinstance(ds, datasets.DatasetDict):
            split = src.split or (next(iter(ds)) if len(ds) == 1 else "train")
            if split not in ds:
                raise DataError(f"{field}.split: {src.path!r} has no split {split!r} "
                                f"(splits: {', '.join(ds)})")
            ds = ds[split]
        return ds
    if path.suffix not in _LOADERS:
        raise DataError(f"{field}.path: {src.path!r}: unsupported type {path.suffix!r}; expected "
                        f"one of {', '.join(sorted(_LOADERS))} or a saved datasets directory")
    try:
        return datasets.load_dataset(_LOADERS[path.suffix], data_files=str(path), split="train")
    except ValueError as exc:
        if "corresponds to no data" in str(exc):  # datasets' word for a file without rows
            raise DataError(f"{field}: {src.path!r} has no rows") from None
        raise DataError(f"{field}.path: {src.path!r} could not be read as "
                        f"{_LOADERS[path.suffix]}: {exc}") from None
    except Exception as exc:  # a parse error of the file's own format
        raise DataError(f"{field}.path: {src.path!r} could not be read as "
                        f"{_LOADERS[path.suffix]}: {type(exc).__name__}: {exc}") from None


def _read_hub(src: HubData, field: str):
    """From the local cache only (rlhf.cli runs with HF_HUB_OFFLINE=1 unless told otherwise)."""
    import datasets

    try:
        return datasets.load_dataset(src.name, src.subset, split=src.split)
    except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        subset = f", subset {src.subset!r}" if src.subset else ""
        raise DataError(f"{field}: dataset {src.name!r}{subset} is not in the local datasets "
                        f"cache ({datasets.config.HF_DATASETS_CACHE}); nothing is downloaded at "
                        "run time: load it once where there is network "
                        f"(datasets.load_dataset({src.name!r}, {src.subset!r})) or point {field} "
                        f"at files ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:  # an unknown split or subset
        raise DataError(f"{field}: dataset {src.name!r}: {exc}") from None


def is_chat(ds, prompt_format: str) -> bool:
    """Whether prompts go through the chat template (``data.prompt_format``)."""
    cols = ds.column_names
    return prompt_format == "chat" or (prompt_format == "auto" and
                                       ("messages" in cols or "system" in cols))


def tokenize_prompts(ds, tokenizer, prompt_format: str = "raw", field: str = "data"):
    """Add ``prompt_ids``: the chat template's rendering with the generation prompt
    (``add_generation_prompt=True``) for chat prompts, else the ``prompt`` text tokenized
    (with the tokenizer's own BOS handling)."""
    cols = ds.column_names
    if not is_chat(ds, prompt_format):
        if "prompt" not in cols:
            hint = (" (the data has `messages`: set data.prompt_format: chat or auto)"
                    if "messages" in cols else "")
            raise DataError(f"{field} has no `prompt` column{hint}; columns found: "
                            f"{', '.join(cols)} (map yours with {field}.columns: {{prompt: NAME}})")
        return ds.map(lambda rows: {"prompt_ids": tokenizer(rows["prompt"]).input_ids},
                      batched=True, desc="tokenizing prompts")  # batched: the fast tokenizer's batch encode
    if "messages" not in cols and "prompt" not in cols:
        raise DataError(f"{field} has neither a `messages` nor a `prompt` column; columns found: "
                        f"{', '.join(cols)} (map yours with {field}.columns: {{prompt: NAME}} or "
                        "{messages: NAME})")
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{field}: prompts in chat form (data.prompt_format={prompt_format}, "
                        f"columns: {', '.join(cols)}) need a tokenizer with a chat template, and "
                        f"{tokenizer.name_or_path!r} has none; use a model whose tokenizer_config.json "
                        "has a chat_template, or set data.prompt_format: raw to tokenize the "
                        "`prompt` text as is")

    def render(row: dict[str, Any]) -> dict[str, list[int]]:
        msgs = chat_messages(row, field)
        out = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)
        return {"prompt_ids": list(out["input_ids"])}

    return ds.map(render, desc="applying the chat template")


def chat_messages(row: dict[str, Any], field: str = "data") -> list[dict[str, str]]:
    """A row's conversation: its ``messages``, else ``system`` (if any) + ``prompt`` as the user
    turn. It must end with a user turn (the model answers it)."""
    if row.get("messages") is not None:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise DataError(f"{field}: `messages` must be a non-empty list of {{role, content}} "
                            f"mappings, got {str(msgs)[:200]}")
        if msgs[-1]["role"] == "assistant":
            raise DataError(f"{field}: a conversation in `messages` ends with an assistant turn; "
                            "prompts end with the turn the model answers (put the reference in "
                            "`answer` or `solution`)")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    system = row.get("system")
    return [*([{"role": "system", "content": system}] if system else []),
            {"role": "user", "content": row["prompt"]}]


def load_prompts(data: DataConfig, which: str, tokenizer):
    """``data.<which>`` (train, eval or warmup) loaded and tokenized."""
    field = f"data.{which}"
    return tokenize_prompts(load_source(getattr(data, which), field), tokenizer,
                            data.prompt_format, field)


def longest_prompt(*datasets) -> int:
    """The most prompt tokens of any row of the tokenized datasets (None entries skipped)."""
    return max(len(ids) for ds in datasets if ds is not None for ids in ds["prompt_ids"])


class PromptStream:
    """Batches of prompts in a seeded order, epoch after epoch. The whole position is
    ``(epoch, offset)``: saving and restoring it resumes the exact same sequence."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True):
        if size == 0:
            raise ValueError("the training dataset is empty")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.epoch, self.offset = 0, 0

    def _order(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        if self.shuffle:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next_indices(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            order = self._order(self.epoch)
            take = order[self.offset:self.offset + self.batch_size - len(out)]
            out += take
            self.offset += len(take)
            if self.offset >= self.size:
                self.epoch, self.offset = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state(self, state: dict) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
