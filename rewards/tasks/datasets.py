"""Write synthetic task sets to files a recipe can point at (through the ``datasets`` library).

    python -m rewards.tasks.datasets countdown --n 2000 --difficulty 3 --seed 0 \\
        --out data/countdown-d3.parquet        # or .jsonl / .json

    >>> from rewards.tasks.datasets import build_dataset
    >>> ds = build_dataset("logic", n=4, difficulty=2, seed=0)   # a datasets.Dataset
    >>> sorted(ds.column_names)[:4]
    ['answer', 'clues', 'difficulty', 'id']

Every row has ``prompt``, ``answer``, ``solution`` (worked reference solution), ``verifier``
(the registered verifier name, for ``RewardRouter(route_field="verifier")``) and the task's own
fields (``numbers``/``target`` for countdown, ``names``/``clues`` for logic).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewards.tasks import available_tasks, get_task


def build_dataset(task: str, n: int, difficulty: int = 2, seed: int = 0):
    """A ``datasets.Dataset`` of ``n`` seeded tasks."""
    import datasets

    rows = get_task(task).generate(n, difficulty=difficulty, seed=seed)
    return datasets.Dataset.from_list(rows)


def write_dataset(task: str, n: int, out: str | Path, difficulty: int = 2, seed: int = 0) -> Path:
    """Write the tasks to ``out``; the suffix picks the format (.parquet, .jsonl, .json)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds = build_dataset(task, n, difficulty, seed)
    if out.suffix == ".parquet":
        ds.to_parquet(str(out))
    elif out.suffix in (".jsonl", ".json"):
        ds.to_json(str(out), lines=out.suffix == ".jsonl", force_ascii=False)
    else:
        raise ValueError(f"unknown dataset file type {out.suffix!r}; use .parquet, .jsonl or .json")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic task set to a file.")
    ap.add_argument("task", choices=available_tasks())
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--difficulty", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    path = write_dataset(args.task, args.n, args.out, args.difficulty, args.seed)
    print(f"wrote {args.n} {args.task} tasks (difficulty {args.difficulty}, seed {args.seed}) to {path}")


if __name__ == "__main__":
    main()
