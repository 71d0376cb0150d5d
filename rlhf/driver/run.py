"""A training run as the driver loop sees it: the role handles (learners, rollouts, scorer, weight
sync) and the glue of one step. Each job has its own module: placement.py starts Ray and the
roles, samples.py turns completions into train samples, evaluation.py and warmup.py are the
phases around the RL steps, checkpoint.py writes and finds checkpoints, metrics.py the logs."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from rewards import RewardResult
from rlhf.config import Recipe, RecipeError, check_resources
from rlhf.driver.checkpoint import CheckpointDirError, Checkpoints, check_reachable, checkpoint_root
from rlhf.driver.data import DataError, PromptStream, load_prompts, longest_prompt
from rlhf.driver.evaluation import before_after, eval_sampling, evaluate, save_problem_rates
from rlhf.driver.export import write_hf
from rlhf.driver.metrics import plot_metrics
from rlhf.driver.pipeline import Pipeline
from rlhf.driver.placement import start_ray, start_roles
from rlhf.driver.resume import RecipeChanged, ResumePoint, check_recipe
from rlhf.driver.samples import Batch, build_samples, next_batch, train_sampling
from rlhf.driver.scoring import Scorer, route_values
from rlhf.driver.tracking import Tracker
from rlhf.driver.warmup import supervised_warmup
from rlhf.driver.windows import LengthWindows, generated_perplexity
from rlhf.learner.batching import TrainSample
from rlhf.models import prepare_model
from rollout.base import Completion, SamplingConfig


class Run:
    """A context manager: ``__enter__`` starts everything (or resumes from the last checkpoint),
    ``__exit__`` stops the actors and, on a failure, says where the metrics and the last
    checkpoint are (both intact)."""

    def __init__(self, recipe: Recipe, address: str | None = None,
                 allow_recipe_change: bool = False):
        self.recipe = recipe
        self.address = address
        self.allow_recipe_change = allow_recipe_change
        self.dir = Path(recipe.run.output_dir) / recipe.run.name
        self.checkpoints = Checkpoints(checkpoint_root(recipe.run), recipe.run.keep_checkpoints)
        self.start_step = 0
        self.point = ResumePoint()
        self._warmup_data: dict | None = None
        self.version = 0
        self._last_eval: int | None = None

    # ---- setup ---------------------------------------------------------------------------
    def __enter__(self) -> Run:
        try:
            return self._setup()
        except (RecipeError, RecipeChanged, DataError, CheckpointDirError):  # nothing ran: the CLI says it
            self._stop()
            raise
        except BaseException as exc:  # what was started is stopped, the reason printed
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _setup(self) -> Run:
        r = self.recipe
        errors = check_resources(r)
        if errors:
            raise RecipeError("recipe", errors)
        ckpt = self.checkpoints.latest() if r.run.resume else None
        changes = check_recipe(self.dir, r, ckpt, self.allow_recipe_change)  # writes recipe.json
        for c in changes:
            tqdm.write(f"recipe changed since {ckpt}: {c}")
        self.model_path = prepare_model(r.model, self.dir / "init_model")
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.train_ds = load_prompts(r.data, "train", self.tokenizer)
        self.eval_ds = load_prompts(r.data, "eval", self.tokenizer) if r.data.eval else None
        self.stream = PromptStream(len(self.train_ds), r.data.prompts_per_step, r.run.seed, r.data.shuffle)
        self.sampling = train_sampling(r.rollout)
        self.scorer = Scorer(r.rewards)
        self.scorer.preflight(route_values(r.rewards.route_field, self.train_ds, self.eval_ds))
        lw = r.rollout.length_windows
        self.windows = LengthWindows(**lw.model_dump()) if lw else None
        start_ray(r.train, r.rollout, self.address)
        context_len = longest_prompt(self.train_ds, self.eval_ds) + r.rollout.max_new_tokens
        self.learners, self.sync, self.rollouts = start_roles(r, self.model_path, context_len)
        self.pipeline = Pipeline(self.rollouts, self.next_batch, self.step_sampling,
                                 self.push_weights, one_step=r.train.async_mode == "one_step")
        check_reachable(self.checkpoints.root, self.learners)
        self._resume(ckpt)
        self.metrics = Tracker(self.dir, r, self.point)
        return self

    def _resume(self, ckpt: Path | None) -> None:
        if ckpt is None:
            return
        state = Checkpoints.driver_state(ckpt)
        self.learners.load(str(ckpt))
        self.stream.load_state(state["data"])
        if self.windows is not None and state.get("windows"):
            self.windows.load_state(state["windows"])
        self.version = state["version"]
        self.push_weights(bump=False)
        self.pipeline.load_state(state.get("pending"))  # one_step: the batch collected at the save
        self.start_step = state["step"]
        warm = state.get("warmup") or {}  # absent: written after the warm-up
        self.point = ResumePoint(self.start_step, warm.get("step", self.recipe.warmup.steps))
        if self.start_step == 0 and self.point.warmup_step >= self.recipe.warmup.steps:
            self._end_warmup()
        self._warmup_data = warm.get("data")
        where = (f"warm-up step {self.point.warmup_step}" if self.point.warmup_step <
                 self.recipe.warmup.steps else f"step {self.start_step}")
        tqdm.write(f"resumed from {ckpt} ({where})")

    # ---- the step's glue -------------------------------------------------------------------
    def next_batch(self, step: int) -> Batch:
        return next_batch(self.stream, self.train_ds, step, self.recipe.run.seed)

    def step_sampling(self) -> SamplingConfig:
        """Sampling for this step: the length window in force sets the token budget."""
        if self.windows is None:
            return self.sampling
        return replace(self.sampling, max_tokens=self.windows.current)

    def build_samples(self, batch: Batch, completions: list[Completion],
                      rewards: list[RewardResult], sampling: SamplingConfig,
                      ) -> tuple[list[TrainSample], dict]:
        r = self.recipe
        return build_samples(batch, completions, rewards, sampling.max_tokens,
                             group_size=r.rollout.samples_per_prompt, shaping=r.rewards,
                             advantages=r.advantages, seed=r.run.seed)

    def advance_windows(self, completions: list[Completion], metrics: dict) -> dict:
        if self.windows is None:
            return {}
        return self.windows.update(metrics["response_len/p99"],
                                   generated_perplexity([c.logprobs for c in completions]))

    @contextlib.contextmanager
    def engines_asleep(self):
        """Colocated placement with ``placement.engine_sleep``: engines free their GPU memory
        while the learners train. Yields a dict that receives the sleep and wake-up times."""
        times: dict[str, float] = {}
        if not self.recipe.placement.engines_sleep:
            yield times
            return
        t0 = time.perf_counter()
        self.rollouts.sleep()
        times["time/engine_sleep"] = time.perf_counter() - t0
        try:
            yield times
        finally:
            t0 = time.perf_counter()
            self.rollouts.wake_up()
            times["time/engine_wake"] = time.perf_counter() - t0

    def push_weights(self, bump: bool = True) -> dict[str, float]:
        """Learner weights -> every engine (rlhf/weight_sync.py); ``bump`` counts a new policy
        version. Returns the sync timings."""
        self.version += int(bump)
        return self.sync.push(self.version)

    def log_step(self, step: int, metrics: dict) -> None:
        self.metrics.log({"kind": "train", "step": step, **metrics})

    # ---- phases around the steps -------------------------------------------------------------
    def warmup(self) -> None:
        """The supervised warm-up, or what is left of it after a resume; checkpointed every
        ``warmup.save_every`` steps and at its end."""
        r = self.recipe
        if self.point.warmup_step >= r.warmup.steps:
            return
        ds = load_prompts(r.data, "warmup" if r.data.warmup else "train", self.tokenizer)
        supervised_warmup(self.learners, r.warmup, ds, self.tokenizer, r.run.seed + 1, self.metrics.log,
                          start=self.point.warmup_step, data_state=self._warmup_data,
                          save=self._save_warmup)
        self._end_warmup()
        self.push_weights(bump=False)

    def _end_warmup(self) -> None:
        """RL starts with fresh optimizer moments (``warmup.reset_optimizer``); also after a
        resume from the end-of-warm-up checkpoint, which holds the warm-up's moments."""
        if self.recipe.warmup.steps and self.recipe.warmup.reset_optimizer:
            self.learners.reset_optimizer()

    def _save_warmup(self, done: int, data_state: dict) -> None:
        self.point = ResumePoint(0, done)
        self.save(0, warmup={"step": done, "data": data_state})

    def evaluate(self, step: int) -> dict:
        if self.eval_ds is None or self._last_eval == step:
            return {}
        self._last_eval = step
        self.pipeline.drain()  # the engines free and holding the newest weights
        sampling = eval_sampling(self.recipe.rollout)
        m, per_problem = evaluate(self.rollouts, self.scorer, self.eval_ds, sampling)
        self.metrics.log({"kind": "eval", "step": step, **m})
        save_problem_rates(self.dir, step, per_problem)
        tqdm.write(f"[eval] step {step}: held-out pass rate {m['eval/pass_rate']:.3f} "
                   f"({len(self.eval_ds)} problems x {sampling.n} samples)")
        return m

    def save(self, step: int, warmup: dict | None = None) -> Path:
        """A checkpoint after ``step`` RL steps; a batch in flight is collected into it
        (rlhf/driver/pipeline.py)."""
        self.pipeline.drain()
        windows = self.windows.state() if self.windows else None
        return self.checkpoints.save(step, self.learners, {
            "run_dir": str(self.dir.absolute()), "version": self.version,
            "data": self.stream.state(), "windows": windows,
            "warmup": warmup or {"step": self.recipe.warmup.steps},
            "pending": self.pipeline.state()})

    # ---- end ---------------------------------------------------------------------------
    def finish(self) -> dict:
        r = self.recipe
        if r.run.steps > self.start_step or self.checkpoints.latest() is None:
            self.save(r.run.steps)
        final_eval = self.evaluate(r.run.steps)
        final = self.checkpoints.latest()
        assert final is not None  # saved above
        write_hf(final, r, self.model_path, self.dir / "final_model")  # as `rlhf export` does
        summary = {"steps": r.run.steps, "run_dir": str(self.dir), **final_eval,
                   **before_after(self.dir, r.run.steps)}
        if r.run.plot:
            summary["plot"] = str(plot_metrics(self.dir / "metrics.jsonl", self.dir / "metrics.png"))
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def __exit__(self, exc_type, exc, tb) -> None:

        if exc is not None:
            ckpt = self.checkpoints.latest()
            where = f"the last checkpoint is {ckpt}" if ckpt else "no checkpoint was written yet"
            what = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                    else f"run failed: {type(exc).__name__}: {exc}")
            print(f"\n{what}\nmetrics so far: {self.dir / 'metrics.jsonl'}; {where}. "
                  "Run the same command again to resume.", file=sys.stderr)
        self._stop()

    def _stop(self) -> None:
        """Close the sinks and verifiers and stop the actors, whatever failed."""
        import ray

        if hasattr(self, "metrics"):
            self.metrics.close()
        if hasattr(self, "scorer"):
            self.scorer.close()
        for role in ("rollouts", "learners"):
            if hasattr(self, role):
                try:
                    getattr(self, role).shutdown()
                except Exception:  # already dead
                    pass
        if ray.is_initialized():
            ray.shutdown()  # with --address this only disconnects from the cluster
