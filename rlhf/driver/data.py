"""Prompt datasets and the seeded, resumable prompt stream.

A data source (recipe ``data.train`` / ``data.eval``) becomes a ``datasets.Dataset`` of task
dicts (``prompt``, ``answer``, ``verifier``, ... whatever the verifier needs). Prompts are
tokenised once here; the token ids then travel unchanged to the engine and the learner.
"""

from __future__ import annotations

import random
from pathlib import Path

from rlhf.config import FileData, SyntheticData

_LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_source(src: SyntheticData | FileData):
    """The source as a ``datasets.Dataset``; errors name the file and the problem."""
    import datasets

    if isinstance(src, SyntheticData):
        from rewards.tasks import get_task

        rows = get_task(src.task).generate(src.size, src.difficulty, src.seed)
        return datasets.Dataset.from_list(rows)
    path = Path(src.path)
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
    elif path.suffix in _LOADERS:
        ds = datasets.load_dataset(_LOADERS[path.suffix], data_files=str(path), split="train")
    else:
        raise ValueError(f"data file {src.path!r}: unsupported type {path.suffix!r}; expected "
                         f"one of {', '.join(sorted(_LOADERS))} or a saved datasets directory")
    if src.limit:
        ds = ds.select(range(min(src.limit, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"data file {src.path!r} has no rows")
    if src.prompt_field not in ds.column_names:
        raise ValueError(f"data file {src.path!r} has no column {src.prompt_field!r} "
                         f"(columns: {', '.join(ds.column_names)})")
    if src.prompt_field != "prompt":
        ds = ds.rename_column(src.prompt_field, "prompt")
    return ds


def tokenize_prompts(ds, tokenizer):
    """Add ``prompt_ids`` (no special tokens beyond the tokenizer's own BOS handling)."""
    return ds.map(lambda row: {"prompt_ids": tokenizer(row["prompt"]).input_ids},
                  desc="tokenizing prompts")


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
