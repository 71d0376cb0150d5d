"""Per-step metrics: JSON lines on disk (flushed every step, so a crash keeps them), a console
line, and a PNG plot of reward / pass rate / response length against step."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsWriter:
    def __init__(self, path: Path, truncate_after: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after is not None and self.path.exists():
            self._truncate(truncate_after)
        self._fh = self.path.open("a")

    def _truncate(self, last_step: int) -> None:
        """On resume: drop records of steps after the checkpoint (they will be redone)."""
        keep = [ln for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", -1) <= last_step]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, record: dict) -> None:
        self._fh.write(json.dumps(record, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def plot_metrics(metrics_path: Path, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    panels = [("reward/mean", "reward"), ("pass_rate", "pass rate"),
              ("response_len/mean", "response length")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, panels):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            ax.plot(*zip(*pts), label="train")
        if key == "pass_rate":
            ev = [(r["step"], r["eval/pass_rate"]) for r in evals if "eval/pass_rate" in r]
            if ev:
                ax.plot(*zip(*ev), "o-", label="held-out")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
