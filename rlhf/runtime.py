"""Everything the driver loop calls: setting up a run (Ray, model, data, roles), turning
completions into train samples, weight sync, evaluation, logging and checkpoints."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rlhf.actors import LearnerGroup, RolloutGroup
from rlhf.advantages import group_advantages, informative_groups, overlong_penalty
from rlhf.batching import TrainSample
from rlhf.config import Recipe, check_resources
from rlhf.data import PromptStream, load_source, tokenize_prompts
from rlhf.learner import cosine_lr
from rlhf.metrics import MetricsWriter, percentile, plot_metrics
from rlhf.scoring import Scorer
from rlhf.weight_sync import ObjectStoreSync, make_weight_sync, pick_transport
from rlhf.windows import LengthWindows, generated_perplexity
from rollout.base import Completion, SamplingConfig

log = logging.getLogger(__name__)
# settings every actor must see, also on a cluster (e.g. NCCL_NVLS_ENABLE=0, HF_HUB_OFFLINE=1)
_PASSED_ENV = ("NCCL_", "VLLM_", "HF_", "TRANSFORMERS_", "TORCH_", "NVSHMEM_", "CUDA_LAUNCH")


@dataclass
class Batch:
    indices: list[int]
    tasks: list[dict]
    prompt_ids: list[list[int]]


def step_seeds(recipe: Recipe, step: int, batch: Batch) -> list[int]:
    """One seed per prompt, fixed by (run seed, step, dataset index): the same prompt draws
    the same samples on whichever worker runs it, and again after a resume."""
    return [((recipe.run.seed * 1_000_003 + step) * 1_000_033 + i) % (2**62) for i in batch.indices]


def build_samples(recipe: Recipe, batch: Batch, completions: list[Completion], rewards,
                  step: int, max_len: int) -> tuple[list[TrainSample], dict]:
    """Rewards -> group advantages -> train samples (shuffled by a seeded RNG so that each
    mini-batch mixes groups), plus the batch metrics."""
    G = recipe.rollout.samples_per_prompt
    lengths = torch.tensor([len(c.token_ids) for c in completions])
    scores = torch.tensor([r.score for r in rewards], dtype=torch.float32)  # [N]
    if recipe.rewards.overlong_cache:
        scores = scores + overlong_penalty(lengths, max_len, recipe.rewards.overlong_cache)
    adv = group_advantages(scores, G, normalize_std=recipe.advantages.normalize_std)  # [N]
    keep_group = informative_groups(scores, G)  # [N/G]
    if not recipe.advantages.dynamic_sampling:
        keep_group = torch.ones_like(keep_group)
    samples = []
    for n, c in enumerate(completions):
        if not keep_group[n // G]:
            continue
        prompt = batch.prompt_ids[c.prompt_index]
        samples.append(TrainSample(prompt + c.token_ids, len(prompt), float(adv[n]),
                                   list(c.logprobs), c.policy_version))
    random.Random(f"{recipe.run.seed}-shuffle-{step}").shuffle(samples)
    finish = Counter(c.finish_reason for c in completions)
    correct = [r.correct for r in rewards]
    metrics = {
        "reward/mean": float(scores.mean()), "reward/std": float(scores.std()) if len(scores) > 1 else 0.0,
        "pass_rate": sum(1 for x in correct if x) / max(len(correct), 1),
        "response_len/mean": float(lengths.float().mean()),
        "response_len/p99": percentile(lengths.tolist(), 99),
        "response_len/max": int(lengths.max()),
        # tokens the engines decoded (before a post-hoc repetition cut), for throughput
        "rollout/tokens": sum(c.extra.get("engine_tokens", len(c.token_ids)) for c in completions),
        "groups/informative_frac": float(informative_groups(scores, G).float().mean()),
        "samples/trained": len(samples),
        "verifier/errors": sum(1 for r in rewards if _failed(r)),
        **{f"finish/{k}": finish.get(k, 0) / len(completions) for k in ("stop", "length", "repetition")},
    }
    return samples, metrics


def placement_plan(r: Recipe) -> dict:
    """Ray resources per role. ``local``: CPU actors. ``separate``: one placement group, the
    learners' bundles first, then the engines' (different GPUs). ``colocated``: one bundle
    (GPU) per learner/engine pair, each taking half of it."""
    mode, n, m = r.placement.mode, r.train.num_learners, r.rollout.num_workers
    plan = {"pg": None, "learner_bundles": None, "rollout_bundles": None,
            "learner_gpus": 0.0, "rollout_gpus": 0.0}
    if mode == "local":
        return plan
    from ray.util.placement_group import placement_group

    if mode == "separate":
        bundles = ([{"GPU": r.placement.learner_gpus, "CPU": r.train.num_cpus}] * n +
                   [{"GPU": r.placement.rollout_gpus, "CPU": r.rollout.num_cpus}] * m)
        plan.update(learner_bundles=list(range(n)), rollout_bundles=list(range(n, n + m)),
                    learner_gpus=r.placement.learner_gpus, rollout_gpus=r.placement.rollout_gpus)
    else:
        if n != m:
            raise ValueError("placement.mode=colocated needs train.num_learners == rollout.num_workers")
        bundles = [{"GPU": 1, "CPU": r.train.num_cpus + r.rollout.num_cpus}] * n
        plan.update(learner_bundles=list(range(n)), rollout_bundles=list(range(n)),
                    learner_gpus=0.5, rollout_gpus=0.5)
    pg = placement_group(bundles, strategy="PACK")
    import ray

    ray.get(pg.ready(), timeout=600)
    plan["pg"] = pg
    return plan


def _failed(r) -> bool:
    """A verifier could not judge this sample (it raised, timed out, or no verifier matched):
    recorded as a zero with the reason, never a crash."""
    parts = r.info.get("parts", {}).values()
    return (r.correct is None and "error" in r.info) or any(
        p.get("correct") is None and "error" in p.get("info", {}) for p in parts)


class Run:
    """A training run's resources and bookkeeping; a context manager that leaves metrics and
    the last checkpoint intact when anything fails."""

    def __init__(self, recipe: Recipe, address: str | None = None):
        self.recipe = recipe
        self.address = address
        self.dir = Path(recipe.run.output_dir) / recipe.run.name
        self.start_step = 0

    # ---- setup ---------------------------------------------------------------------------
    def __enter__(self) -> Run:
        r = self.recipe
        errors = check_resources(r)
        if errors:
            from rlhf.config import RecipeError

            raise RecipeError("recipe", errors)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "recipe.json").write_text(r.model_dump_json(indent=2))
        self.model_path = self._prepare_model()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.train_ds = tokenize_prompts(load_source(r.data.train), self.tokenizer)
        self.eval_ds = tokenize_prompts(load_source(r.data.eval), self.tokenizer) if r.data.eval else None
        self.stream = PromptStream(len(self.train_ds), r.data.prompts_per_step, r.run.seed, r.data.shuffle)
        self.sampling = SamplingConfig(
            n=r.rollout.samples_per_prompt, temperature=r.rollout.temperature, top_p=r.rollout.top_p,
            top_k=r.rollout.top_k, max_tokens=r.rollout.max_new_tokens,
            repetition_window=r.rollout.repetition_stop.window,
            repetition_prob=r.rollout.repetition_stop.prob)
        self.scorer = Scorer(r.rewards)
        lw = r.rollout.length_windows
        self.windows = LengthWindows(**lw.model_dump()) if lw else None
        self._start_ray()
        self.learners, self.sync, self.rollouts = self._start_roles()
        self.version = 0
        self._resume()
        self.metrics = MetricsWriter(self.dir / "metrics.jsonl", truncate_after=self.start_step)
        return self

    def _prepare_model(self) -> str:
        m = self.recipe.model
        if m.path is not None:
            return str(Path(m.path).resolve())
        from rlhf.models import build_tiny_model

        out = self.dir / "init_model"
        if not (out / "config.json").exists():
            build_tiny_model(out, **m.build.model_dump())
        return str(out.resolve())

    def _start_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        passed = {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ENV)}
        env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", **passed}}
        address = self.address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=True)
            return
        r = self.recipe
        cpus = r.train.num_learners * r.train.num_cpus + r.rollout.num_workers * r.rollout.num_cpus
        # A new local instance (even where `ray start` left a cluster file), on loopback.
        ray.init(address="local", num_cpus=max(int(cpus + 0.999), 1), include_dashboard=False,
                 runtime_env=env, log_to_driver=True, _node_ip_address="127.0.0.1")

    def _start_roles(self) -> tuple[LearnerGroup, ObjectStoreSync, RolloutGroup]:
        """The learners, the weight sync between them and the engines, the rollout workers
        (whose restart hook is the sync's ``restore``), connected."""
        r = self.recipe
        loss = r.loss.model_dump()
        learner_kwargs = dict(model_path=self.model_path, model_cfg=r.model, train_cfg=r.train,
                              loss_cfg=loss, lm_head_fp32=r.precision.lm_head_fp32, seed=r.run.seed,
                              use_reference=loss.get("kl_coef", 0.0) > 0)
        place = placement_plan(r)
        learners = LearnerGroup(r.train.num_learners, learner_kwargs, r.train.num_cpus,
                                place["learner_gpus"], place["pg"], name=f"m1rl-{r.run.name}",
                                bundles=place["learner_bundles"])
        engine_opts = {"dtype": r.model.dtype, "lm_head_fp32": r.precision.lm_head_fp32}
        self.transport = pick_transport(r.rollout.engine, r.placement.mode, r.placement.weight_sync)
        if r.rollout.engine == "hf":
            engine_opts["max_batch_rows"] = r.rollout.max_batch_rows
        else:
            engine_opts.update(gpu_memory_utilization=r.rollout.gpu_memory_utilization,
                               max_model_len=r.rollout.max_model_len or self._context_len(),
                               enable_sleep_mode=r.placement.mode == "colocated", seed=r.run.seed,
                               repetition_stop=r.rollout.repetition_stop.decode_time,
                               weight_transfer=None if self.transport == "object_store" else self.transport)
        sync = make_weight_sync(self.transport, learners,
                                "bfloat16" if r.model.dtype == "bfloat16" else None)
        rollouts = RolloutGroup(r.rollout.num_workers, r.rollout.engine, self.model_path,
                                engine_opts, r.rollout.num_cpus, place["rollout_gpus"],
                                r.rollout.max_restarts, place["pg"], place["rollout_bundles"],
                                on_restart=sync.restore)
        sync.connect(rollouts)
        return learners, sync, rollouts

    def _context_len(self) -> int:
        """Longest prompt in the data + the response budget (the largest length window)."""
        longest = max(len(ids) for ds in (self.train_ds, self.eval_ds) if ds is not None
                      for ids in ds["prompt_ids"])
        return longest + self.recipe.rollout.max_new_tokens

    @contextlib.contextmanager
    def engines_asleep(self):
        """Colocated placement: engines free their GPU memory while the learners train. Yields
        a dict that receives the sleep and wake-up times."""
        times: dict[str, float] = {}
        if self.recipe.placement.mode != "colocated":
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

    # ---- loop pieces -------------------------------------------------------------------
    def step_sampling(self) -> SamplingConfig:
        """Sampling for this step: the length window in force sets the token budget."""
        if self.windows is None:
            return self.sampling
        return replace(self.sampling, max_tokens=self.windows.current)

    def advance_windows(self, completions: list[Completion], metrics: dict) -> dict:
        if self.windows is None:
            return {}
        return self.windows.update(metrics["response_len/p99"],
                                   generated_perplexity([c.logprobs for c in completions]))

    def next_batch(self) -> Batch:
        idx = self.stream.next_indices()
        rows = self.train_ds.select(idx)
        tasks = [dict(row) for row in rows]
        return Batch(idx, tasks, [t.pop("prompt_ids") for t in tasks])

    def push_weights(self, bump: bool = True) -> dict[str, float]:
        """Learner weights -> every engine (rlhf/weight_sync.py); ``bump`` counts a new policy
        version. Returns the sync timings."""
        self.version += int(bump)
        return self.sync.push(self.version)

    def log_step(self, step: int, metrics: dict) -> None:
        self.metrics.log({"kind": "train", "step": step, **metrics})

    def warmup(self) -> None:
        w, r = self.recipe.warmup, self.recipe
        if w.steps == 0:
            return
        src = r.data.warmup or r.data.train
        ds = tokenize_prompts(load_source(src), self.tokenizer)
        if "solution" not in ds.column_names:
            raise ValueError("warm-up needs a `solution` column in data.warmup (or data.train)")
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        stream = PromptStream(len(ds), w.batch_size, r.run.seed + 1)
        for i in tqdm_range(w.steps, "warm-up"):
            rows = ds.select(stream.next_indices())
            samples = [TrainSample(row["prompt_ids"] + self.tokenizer(row["solution"]).input_ids + eos,
                                   len(row["prompt_ids"])) for row in rows]
            m = self.learners.sft_step(samples, cosine_lr(i, w.steps, w.lr))
            self.metrics.log({"kind": "warmup", "step": 0, "warmup_step": i + 1, **m})
        self.push_weights(bump=False)

    def evaluate(self, step: int) -> dict:
        if self.eval_ds is None or getattr(self, "_last_eval", None) == step:
            return {}
        self._last_eval = step
        t0 = time.perf_counter()
        rows = [dict(row) for row in self.eval_ds]
        prompts = [row.pop("prompt_ids") for row in rows]
        ro = self.recipe.rollout
        sampling = SamplingConfig(n=ro.eval_samples if ro.eval_temperature > 0 else 1,
                                  temperature=ro.eval_temperature, seed=None,
                                  max_tokens=self.recipe.rollout.max_new_tokens,
                                  repetition_window=self.sampling.repetition_window,
                                  repetition_prob=self.sampling.repetition_prob)
        comps = self.rollouts.generate(prompts, list(range(len(prompts))), sampling)
        results, _ = self.scorer.score([c.extra["text"] for c in comps],
                                       [rows[c.prompt_index] for c in comps])
        m = {"eval/pass_rate": sum(1 for x in results if x.correct) / len(results),
             "eval/reward_mean": sum(x.score for x in results) / len(results),
             "eval/response_len_mean": sum(len(c.token_ids) for c in comps) / len(comps),
             "time/eval": time.perf_counter() - t0}
        self.metrics.log({"kind": "eval", "step": step, **m})
        tqdm_write(f"[eval] step {step}: held-out pass rate {m['eval/pass_rate']:.3f} "
                   f"({len(rows)} problems x {sampling.n} samples)")
        return m

    # ---- checkpoints -------------------------------------------------------------------
    def _ckpt_root(self) -> Path:
        return self.dir / "checkpoints"

    def save(self, step: int) -> Path:
        """Atomic: written to a temporary directory, renamed into place when complete."""
        root = self._ckpt_root()
        root.mkdir(exist_ok=True)
        final, tmp = root / f"step_{step:06d}", root / f".tmp_step_{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.learners.save(str(tmp))
        state = {"step": step, "version": self.version, "data": self.stream.state(),
                 "windows": self.windows.state() if self.windows else None}
        (tmp / "driver.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(p for p in root.glob("step_*"))[:-self.recipe.run.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        done = sorted(p for p in self._ckpt_root().glob("step_*") if (p / "driver.json").exists()
                      and (p / "learner.pt").exists())
        return done[-1] if done else None

    def _resume(self) -> None:
        ckpt = self.latest_checkpoint() if self.recipe.run.resume else None
        if ckpt is None:
            return
        state = json.loads((ckpt / "driver.json").read_text())
        self.learners.load(str(ckpt))
        self.stream.load_state(state["data"])
        if self.windows is not None and state.get("windows"):
            self.windows.load_state(state["windows"])
        self.version = state["version"]
        self.push_weights(bump=False)
        self.start_step = state["step"]
        tqdm_write(f"resumed from {ckpt} (step {self.start_step})")

    # ---- end ---------------------------------------------------------------------------
    def finish(self) -> dict:
        r = self.recipe
        if r.run.steps > self.start_step or self.latest_checkpoint() is None:
            self.save(r.run.steps)
        final_eval = self.evaluate(r.run.steps)
        self.learners.save_hf(str(self.dir / "final_model"), self.model_path)
        summary = {"steps": r.run.steps, "run_dir": str(self.dir), **final_eval}
        if r.run.plot:
            summary["plot"] = str(plot_metrics(self.dir / "metrics.jsonl", self.dir / "metrics.png"))
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def __exit__(self, exc_type, exc, tb) -> None:
        import ray

        if exc is not None:
            ckpt = self.latest_checkpoint() if hasattr(self, "learners") else None
            where = f"the last checkpoint is {ckpt}" if ckpt else "no checkpoint was written yet"
            print(f"\nrun failed: {type(exc).__name__}: {exc}\nmetrics so far: "
                  f"{self.dir / 'metrics.jsonl'}; {where}. Run the same command again to resume.",
                  file=sys.stderr)
        if hasattr(self, "metrics"):
            self.metrics.close()
        for role in ("rollouts", "learners"):
            if hasattr(self, role):
                try:
                    getattr(self, role).shutdown()
                except Exception:  # already dead
                    pass
        if ray.is_initialized():
            ray.shutdown()  # with --address this only disconnects from the cluster


def tqdm_range(n: int, desc: str):
    from tqdm import tqdm

    return tqdm(range(n), desc=desc, unit="step")


def tqdm_write(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg)
