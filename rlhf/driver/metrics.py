"""Per-step metrics: JSON lines on disk (flushed every step, so a crash keeps them) and a PNG
plot of reward / pass rate / response length against step. The other sinks (TensorBoard, W&B,
MLflow) are in tracking.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


class MetricsWriter:
    """``keep(record)`` decides which records of an earlier attempt stay (on resume: those before
    the checkpoint; None keeps all)."""

    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep is not None and self.path.exists():
            self._truncate(keep)
        self._fh = self.path.open("a")

    def _truncate(self, keep: Callable[[dict], bool]) -> None:
        """Drop the records that will be redone."""
        rows = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        self.path.write_text("".join(ln + "\n" for ln in rows if keep(json.loads(ln))))

    def log(self, record: dict) -> None:
        self._fh.write(json.dumps(record, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def plot_metrics(metrics_path: Path, out_png: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = metrics_figure(read_metrics(metrics_path))
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def metrics_figure(rows: list[dict]):
    """Reward, pass rate (train and held-out) and response length against the RL step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    panels = [("reward/mean", "reward", "mean reward"), ("pass_rate", "pass rate", "pass rate"),
              ("response_len/mean", "response length", "mean response length (tokens)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title, ylabel) in zip(axes, panels):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            ax.plot(*zip(*pts), label="train")
        if key == "pass_rate":
            ev = [(r["step"], r["eval/pass_rate"]) for r in evals if "eval/pass_rate" in r]
            if ev:
                ax.plot(*zip(*ev), "o-", label="held-out")
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best")
    fig.tight_layout()
    return fig
