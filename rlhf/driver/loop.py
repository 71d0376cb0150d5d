"""The training driver: the RL loop, calling only role handles (rlhf/driver/run.py).

    generate -> score -> advantages -> train -> push weights -> log -> evaluate / checkpoint

When a batch is generated and the weights pushed is the pipeline's (rlhf/driver/pipeline.py):
in turn, or with ``train.async_mode=one_step`` the next batch generating while this one trains.
"""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from rlhf.config import Recipe
from rlhf.driver.run import Run

log = logging.getLogger(__name__)


def train(recipe: Recipe, address: str | None = None, allow_recipe_change: bool = False) -> dict:
    """Run a recipe to completion; return the final summary (also in ``summary.json``).
    A run that resumes under a changed recipe stops unless ``allow_recipe_change``
    (rlhf/driver/resume.py)."""
    with Run(recipe, address, allow_recipe_change) as run:
        if run.start_step == 0:
            run.warmup()
            run.evaluate(step=0)
        bar = tqdm(range(run.start_step, recipe.run.steps), desc="RL", unit="step",
                   initial=run.start_step, total=recipe.run.steps)
        for step in bar:
            t0 = time.perf_counter()
            gen = run.pipeline.batch(step)  # one_step: batch step + 1 is now generating
            completions, batch = gen.completions, gen.batch
            t_gen = time.perf_counter()
            rewards, score_m = run.scorer.score([c.text for c in completions],
                                                [batch.tasks[c.prompt_index] for c in completions])
            samples, batch_m = run.build_samples(batch, completions, rewards, gen.sampling)
            batch_m.update(run.advance_windows(completions, batch_m))
            t_score = time.perf_counter()
            with run.engines_asleep() as sleep_m:
                train_m = run.learners.train(samples, recipe.train.mini_batches) if samples else {}
            t_train = time.perf_counter()
            sync_m = run.pipeline.trained()  # pushed now, or after the batch in flight
            metrics = {**batch_m, **score_m, **train_m, **sleep_m, **gen.metrics, **sync_m,
                       "rollout/tokens_per_s": batch_m["rollout/tokens"] / gen.seconds,
                       "time/score_adv": t_score - t_gen, "time/train_total": t_train - t_score,
                       "time/step": time.perf_counter() - t0}
            run.log_step(step + 1, metrics)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                            pass_rate=f"{metrics['pass_rate']:.3f}")
            if recipe.run.eval_every and (step + 1) % recipe.run.eval_every == 0:
                run.evaluate(step + 1)
            if recipe.run.save_every and (step + 1) % recipe.run.save_every == 0:
                run.save(step + 1)
        return run.finish()
