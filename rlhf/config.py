"""Recipe configuration: typed, validated, YAML is only data.

``load_recipe(path, overrides)`` reads a YAML recipe, applies dotted overrides
(``loss.eps_high=0.3``), validates it into :class:`Recipe` and returns it; on any problem it
raises :class:`RecipeError` listing *every* error with its key path (unknown keys get the
nearest valid key as a suggestion). Each component receives only its own section.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rewards.combine import VerifierSpec
from rollout.engines import EngineConfig, HFEngineConfig, VLLMEngineConfig, engine_sections

Agg = Literal["token-mean", "seq-mean"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


# ---------------------------------------------------------------------------------------
class TimeoutConfig(Section):
    """How long the driver waits on an actor (rlhf/calls.py): a phase's first call gets
    ``first_call_s``; later ones ``max(floor_s, factor x the slowest call of that phase so
    far)``. A call past it stops the run, naming the actor and the phase."""
    floor_s: float = Field(300.0, gt=0.0, description="Shortest timeout of a phase's later calls (seconds).")
    factor: float = Field(10.0, ge=1.0, description="A later call may take this many times the slowest call of its phase so far.")
    first_call_s: float = Field(1800.0, gt=0.0, description="Timeout of a phase's first call: actor start-up (model loading, engine compilation), the first train step, the first weight push (seconds).")


class RunConfig(Section):
    name: str = Field("run", description="Run name; outputs go to output_dir/name.")
    output_dir: str = Field("runs", description="Directory for metrics, plots and checkpoints.")
    seed: int = Field(0, description="Seed for data order, sampling and initialisation.")
    steps: int = Field(10, ge=0, description="RL steps (one generation batch each).")
    eval_every: int = Field(0, ge=0, description="Evaluate every N steps (0: only at start and end).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many step checkpoints to keep.")
    checkpoint_dir: str | None = Field(None, description="Where this run's step checkpoints go (null: output_dir/name/checkpoints). Every learner writes its own shard there and the driver its state, so on a cluster it must be a shared filesystem or a path mounted at the same place on every node; checked at start, from the driver and every learner. Relative paths resolve against the driver's working directory.")
    resume: bool = Field(True, description="Resume from the latest checkpoint in the run directory.")
    plot: bool = Field(True, description="Write a PNG plot of the metrics at the end.")
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig, description="Timeouts of the driver's calls to its actors.")


class WandbConfig(Section):
    """Weights & Biases (the optional ``wandb`` extra; imported only when this section is set)."""
    project: str = Field("m1rl", min_length=1, description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (team or user; default: yours).")
    name: str | None = Field(None, description="Run name shown in W&B (default: run.name).")
    group: str | None = Field(None, description="W&B group (e.g. one per sweep).")
    tags: list[str] = Field(default_factory=list, description="W&B tags.")
    mode: Literal["online", "offline", "disabled"] | None = Field(None, description="online, offline (written under the run directory, `wandb sync` later) or disabled; null: the WANDB_MODE environment variable, else online.")


class MLflowConfig(Section):
    """MLflow (the optional ``mlflow`` extra; imported only when this section is set)."""
    tracking_uri: str | None = Field(None, description="Tracking server or store URI; null: MLFLOW_TRACKING_URI, else MLflow's default. A local store (file: or sqlite:) needs no network.")
    experiment: str = Field("m1rl", min_length=1, description="MLflow experiment name.")
    run_name: str | None = Field(None, description="MLflow run name (default: run.name).")


class LoggingConfig(Section):
    """Where metrics go. metrics.jsonl in the run directory is always written (the plot, resume and
    sweeps read it); every sink gets the same metric names and the recipe + git commit as run
    config."""
    tensorboard: bool | Literal["auto"] = Field("auto", description="TensorBoard event files in run_dir/tensorboard (torch.utils.tensorboard). auto: on when the tensorboard package is installed.")
    wandb: WandbConfig | None = Field(None, description="Weights & Biases run (null: off).")
    mlflow: MLflowConfig | None = Field(None, description="MLflow run (null: off).")


class BuildModel(Section):
    """A tiny Qwen2 model and byte-level tokenizer made in the run (no downloads)."""
    hidden_size: int = Field(128, ge=8, description="Hidden size.")
    num_layers: int = Field(4, ge=1, description="Decoder layers.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Key/value heads.")
    intermediate_size: int | None = Field(None, description="MLP size (default 3 x hidden).")
    tie_word_embeddings: bool = Field(False, description="Tie the LM head to the embeddings.")
    vocab_size: int | None = Field(None, ge=1, description="Embedding rows (default: the tokenizer's 262); larger pads the vocabulary, e.g. 151936 for the Qwen2.5 shape. Ids past the tokenizer decode to nothing.")
    max_position_embeddings: int = Field(2048, ge=16, description="Longest context (prompt + response) the model takes.")
    seed: int = Field(0, description="Initialisation seed.")


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                 "down_proj"], description="Module names that get adapters.")


class ModelConfig(Section):
    path: str | None = Field(None, description="Local Hugging Face checkpoint directory. Relative paths in a recipe file resolve against the recipe's directory.", json_schema_extra={"path": True})
    build: BuildModel | None = Field(None, description="Build a tiny model instead of `path`.")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Compute dtype of the learner's and engines' weights.")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="Activation checkpointing in the learner: true / false for every decoder layer; auto: on a GPU, only as many layers as the micro-batch token budget needs to fit in memory (none on CPU).")
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of all weights.")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.build is None):
            raise ValueError("set exactly one of model.path (a local checkpoint directory) "
                             "or model.build (a tiny model made in the run)")
        return self


class SyntheticData(Section):
    type: Literal["synthetic"] = "synthetic"
    task: str = Field("arithmetic", description="Synthetic task name (rewards.tasks).")
    size: int = Field(1000, ge=1, description="Number of problems.")
    difficulty: int = Field(2, ge=1, description="Task difficulty knob.")
    seed: int = Field(0, description="Generator seed (use different seeds for train and eval).")


class TableSource(Section):
    """What every table source (a file, a saved dataset, a Hugging Face dataset) has."""
    columns: dict[str, str] = Field(default_factory=dict, description="Field the toolkit or a verifier reads -> the dataset's column holding it, e.g. {prompt: question, answer: solution}; the column is renamed. Fields: prompt (text) or messages (chat) or system + prompt; answer, tests, solution (warm-up), verifier, ... whatever the verifiers read.")
    limit: int | None = Field(None, ge=1, description="Use only the first N rows.")

    @model_validator(mode="before")
    @classmethod
    def _prompt_field_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt_field" in data:
            raise ValueError(f"prompt_field is now part of `columns`: columns: {{prompt: "
                             f"{data['prompt_field']}}}")
        return data

    @field_validator("columns")
    @classmethod
    def _one_field_per_column(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for fld, col in v.items():
            if not fld or not col:
                raise ValueError("field and column names must not be empty")
            if col in seen:
                raise ValueError(f"column {col!r} is given for both {seen[col]!r} and {fld!r}")
            seen[col] = fld
        return v


class FileData(TableSource):
    type: Literal["file"] = "file"
    path: str = Field(description="A .jsonl, .json, .parquet or .csv file, or a directory written by `datasets`' save_to_disk. Relative paths in a recipe file resolve against the recipe's directory.", json_schema_extra={"path": True})
    split: str | None = Field(None, description="Split of a saved DatasetDict directory (default: its only split, else 'train').")


class HubData(TableSource):
    """A Hugging Face dataset by name, read from the local `datasets` cache (offline: nothing is
    downloaded at run time)."""
    type: Literal["hub"] = "hub"
    name: str = Field(min_length=1, description="Dataset name on the Hub, e.g. openai/gsm8k (it must be in the local datasets cache).")
    subset: str | None = Field(None, description="Configuration (subset), e.g. main.")
    split: str = Field("train", min_length=1, description="Split, e.g. train or test.")


DataSource = Annotated[SyntheticData | FileData | HubData, Field(discriminator="type")]


class DataConfig(Section):
    train: DataSource = Field(description="Training prompts.")
    eval: DataSource | None = Field(None, description="Held-out prompts for pass-rate evaluation.")
    prompts_per_step: int = Field(16, ge=1, description="Prompts per generation batch.")
    shuffle: bool = Field(True, description="Shuffle each epoch (seeded).")
    warmup: DataSource | None = Field(None, description="Examples with a `solution` for supervised warm-up (default: the train set).")
    prompt_format: Literal["auto", "chat", "raw"] = Field("auto", description="chat: prompts go through the tokenizer's chat template (apply_chat_template with add_generation_prompt), from a `messages` column, or `system` + `prompt`, or `prompt` as the user turn; raw: the `prompt` text is tokenized as is; auto: chat when the data is in chat form (a `messages` or `system` column), else raw.")


class RepetitionStop(Section):
    window: int = Field(3000, ge=0, description="Stop after this many consecutive confident tokens (0: off). M1: 3000.")
    prob: float = Field(0.99, gt=0.0, lt=1.0, description="A token is confident above this probability. M1: 0.99.")


class LengthWindowConfig(Section):
    windows: list[int] = Field(description="Increasing output-token windows, e.g. M1's [40960, 49152, 57344, 65536, 73728, 81920].")
    near_frac: float = Field(0.95, gt=0.0, le=1.0, description="Advance only when p99 response length >= near_frac x window.")
    ppl_rel_tol: float = Field(0.02, gt=0.0, description="... and generated-text perplexity changed less than this (relative) ...")
    patience: int = Field(3, ge=1, description="... for this many consecutive steps.")


class RolloutConfig(Section):
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="Generation engine, picked by `type`, with its own options (rollout/engines.py): hf (transformers, CPU) or vllm (GPU). `engine: vllm` is short for `engine: {type: vllm}`.")
    num_workers: int = Field(1, ge=1, description="Rollout actors, one engine each.")
    samples_per_prompt: int = Field(8, ge=1, description="G: responses per prompt.")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling: keep the most likely tokens up to this probability mass (1: off). Logprobs stay the sampler's raw ones.")
    top_k: int = Field(-1, description="Keep the k most likely tokens (-1: off).")
    min_p: float = Field(0.0, ge=0.0, lt=1.0, description="Keep tokens with probability >= min_p x the top token's (0: off).")
    max_new_tokens: int = Field(256, ge=1, description="Response token budget (the largest window when length_windows is set).")
    length_windows: LengthWindowConfig | None = Field(None, description="M1's staged length windows (null: a fixed max_new_tokens).")
    repetition_stop: RepetitionStop = Field(default_factory=RepetitionStop, description="M1's early truncation of repetitive generations.")
    eval_temperature: float = Field(0.0, ge=0.0, description="Temperature for evaluation (0: greedy). M1 reports temperature 1.0.")
    eval_samples: int = Field(1, ge=1, description="Samples per held-out prompt; the pass rate averages over them (M1: mean over 32).")
    eval_top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling for evaluation (M1: 0.95).")
    eval_top_k: int = Field(-1, description="Top-k for evaluation (-1: off).")
    eval_min_p: float = Field(0.0, ge=0.0, lt=1.0, description="min-p for evaluation (0: off).")
    num_cpus: float = Field(1.0, gt=0.0, description="Ray CPUs per rollout actor.")
    max_restarts: int = Field(3, ge=0, description="Restarts of a failed rollout actor before the step fails.")

    @field_validator("engine", mode="before")
    @classmethod
    def _name_is_a_section(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @field_validator("top_k", "eval_top_k")
    @classmethod
    def _k_is_off_or_positive(cls, v: int) -> int:
        if v != -1 and v < 1:
            raise ValueError(f"must be -1 (off) or at least 1, got {v}")
        return v


class RewardsConfig(Section):
    verifiers: list[VerifierSpec] = Field(default_factory=list, description="Verifiers; empty: each task's own `verifier` field.")
    route_field: str = Field("verifier", description="Dataset field naming a sample's verifier.")
    format_weight: float = Field(0.0, description="Weight of the format reward (finished thinking + boxed answer).")
    overlong_cache: int = Field(0, ge=0, description="DAPO soft overlong penalty window in tokens (0: off).")
    max_error_rate: float = Field(0.2, ge=0.0, le=1.0, description="Stop the run when more than this share of a step's samples could not be judged (verifier backend down, verifier raised); 1.0: never stop.")


class AdvantageConfig(Section):
    normalize_std: bool = Field(True, description="Divide by the group std (GRPO/M1); False: Dr. GRPO.")
    dynamic_sampling: bool = Field(False, description="DAPO: drop groups whose rewards are all equal.")
    mask_truncated: bool = Field(False, description="DAPO's overlong filtering: samples cut at the step's token limit (finish reason `length`) are left out of the loss; they still count, with their reward, in their group's baseline.")


class LossSection(Section):
    """The base of every loss section: its fields, but ``type``, are the registered loss
    function's parameters (rlhf/learner/losses.py), with their defaults here only."""

    @property
    def uses_reference(self) -> bool:
        """Whether the learner needs a frozen reference model (``ref_logprobs``)."""
        return False


class CispoLoss(LossSection):
    type: Literal["cispo"] = "cispo"
    eps_low: float | None = Field(None, ge=0.0, description="Lower IS-weight bound 1 - eps_low; null: none (M1).")
    eps_high: float = Field(5.0, gt=0.0, description="Upper IS-weight bound, relative (M1's convention): weight <= 1 + eps_high, so 5.0 caps at 6. M1 does not publish its value.")
    weight_cap: float | None = Field(None, gt=1.0, description="Upper IS-weight bound, absolute (TRL's/ScaleRL's epsilon_high convention: their 5.0 is weight_cap 5.0); replaces 1 + eps_high. Give one of the two.")
    unified_mask: bool = Field(False, description="M1 eq. 7 token mask (PPO trust region).")
    agg: Agg = Field("token-mean", description="Loss aggregation.")

    @model_validator(mode="after")
    def _one_upper_bound(self):
        if self.weight_cap is not None and "eps_high" in self.model_fields_set:
            raise ValueError(f"give one upper bound: eps_high ({self.eps_high}, relative: weight <= "
                             f"1 + eps_high) or weight_cap ({self.weight_cap}, absolute), not both")
        return self


class GrpoLoss(LossSection):
    type: Literal["grpo"] = "grpo"
    eps_low: float = Field(0.2, ge=0.0, le=1.0, description="Clip 1 - eps_low.")
    eps_high: float = Field(0.2, ge=0.0, description="Clip 1 + eps_high.")
    kl_coef: float = Field(0.0, ge=0.0, description="k3 KL to the initial policy (0: no reference model).")
    agg: Agg = Field("seq-mean", description="Loss aggregation.")

    @property
    def uses_reference(self) -> bool:
        return self.kl_coef > 0


class DapoLoss(LossSection):
    type: Literal["dapo"] = "dapo"
    eps_low: float = Field(0.2, ge=0.0, le=1.0, description="Clip 1 - eps_low.")
    eps_high: float = Field(0.28, ge=0.0, description="Clip-higher 1 + eps_high.")
    agg: Agg = Field("token-mean", description="Loss aggregation.")


class PpoLoss(LossSection):
    type: Literal["ppo"] = "ppo"
    eps_low: float = Field(0.2, ge=0.0, le=1.0, description="Clip 1 - eps_low.")
    eps_high: float = Field(0.2, ge=0.0, description="Clip 1 + eps_high.")
    agg: Agg = Field("token-mean", description="Loss aggregation.")


LossConfig = Annotated[CispoLoss | GrpoLoss | DapoLoss | PpoLoss, Field(discriminator="type")]


class OptimConfig(Section):
    lr: float = Field(1e-6, gt=0.0, description="Learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas (M1: 0.9, 0.95).")
    eps: float = Field(1e-15, gt=0.0, description="AdamW eps (M1: 1e-15).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up in optimizer steps.")
    grad_clip: float = Field(1.0, gt=0.0, description="Max global gradient norm.")


class TrainConfig(Section):
    num_learners: int = Field(1, ge=1, description="Learner actors (one torch.distributed group, FSDP2 when > 1).")
    mini_batches: int = Field(4, ge=1, description="K optimizer updates per generation batch (M1: 16).")
    micro_batch_tokens: int = Field(8192, ge=16, description="Token budget of one micro-batch: total tokens when packing, padded count x length otherwise.")
    packing: bool = Field(True, description="Pack several sequences per row (positions restart per sequence, attention kept inside each, no padding); false: padded rows.")
    logprob_chunk: int = Field(1024, ge=1, description="Tokens per chunk of the FP32 LM head.")
    async_mode: Literal["off", "one_step"] = Field("off", description="off: generate, then train, in turn. one_step: the engines generate batch n+1 with the weights of version n while the learners train on batch n (rlhf/driver/pipeline.py); needs learners and engines able to run at once (placement.mode local or separate, or colocated with placement.engine_sleep=false) and max_staleness >= 1. YAML's bare off (false) is off.")
    max_staleness: int = Field(1, ge=0, description="Refuse samples more than this many policy versions older than the learner (a synchronous run's samples are 0 versions old, one_step's 1).")
    stale_is_cap: float = Field(2.0, ge=1.0, description="Samples older than the learner get the truncated importance weight min(pi_old / pi_rollout, stale_is_cap) on their tokens (rlhf/learner/losses.py behaviour_weight).")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="AdamW settings.")
    num_cpus: float = Field(1.0, gt=0.0, description="Ray CPUs per learner actor.")
    fsdp: Literal["auto", "on", "off"] = Field("auto", description="FSDP2 sharding: auto = when more than one learner or on GPU.")
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile each decoder layer's norms and MLP (fuses their elementwise work; the attention kernels stay as they are); auto = on GPU. The first steps pay the compilation.")

    @field_validator("async_mode", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML reads a bare `off` as false


class WarmupConfig(Section):
    steps: int = Field(0, ge=0, description="Supervised warm-up steps on reference solutions before RL (0: none).")
    batch_size: int = Field(32, ge=1, description="Examples per warm-up step.")
    lr: float = Field(1e-3, gt=0.0, description="Warm-up learning rate (cosine decay to 10%).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N warm-up steps, so that an interrupted warm-up resumes where it was (0: only at its end).")
    reset_optimizer: bool = Field(True, description="Start RL with fresh AdamW moments, as from a separately trained SFT checkpoint; false: RL continues the warm-up's moments (the warm-up and RL share one optimizer).")


class PrecisionConfig(Section):
    lm_head_fp32: bool = Field(True, description="M1's fix: LM head in FP32 on the learner AND the engine (one switch for both).")


GPU_TRANSPORTS = {"ipc": "colocated", "nccl": "separate"}  # the placement each one needs


class PlacementConfig(Section):
    mode: Literal["local", "separate", "colocated"] = Field("local", description="local: CPU actors; separate: learners and engines on different GPUs; colocated: shared GPUs (one per learner/engine pair), engines sleep while learners train unless placement.engine_sleep=false.")
    learner_gpus: float = Field(1.0, ge=0.0, description="GPUs per learner actor (separate; colocated shares one GPU per learner/engine pair).")
    rollout_gpus: float = Field(1.0, ge=0.0, description="GPUs per rollout actor (separate).")
    weight_sync: Literal["auto", "object_store", "ipc", "nccl"] = Field("auto", description="Learner -> engine transport. auto: CUDA IPC when colocated, NCCL bucketed broadcast when separate (vllm), the object store otherwise.")
    engine_sleep: bool = Field(True, description="colocated: the engines free their GPU memory (sleep level 1) while the learners train, and wake for the next batch. false: both stay resident on the shared GPU, which must hold the engine's gpu_memory_utilization share plus the learner's peak; this is what lets train.async_mode=one_step overlap the two on one GPU.")

    @property
    def engines_sleep(self) -> bool:
        """Whether the engines sleep while the learners train (colocated, engine_sleep)."""
        return self.mode == "colocated" and self.engine_sleep


class Recipe(Section):
    """A whole recipe. Each component receives only its own section."""
    run: RunConfig = Field(default_factory=RunConfig, description="Run bookkeeping.")
    model: ModelConfig = Field(description="The policy model.")
    data: DataConfig = Field(description="Prompts.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Generation.")
    rewards: RewardsConfig = Field(default_factory=RewardsConfig, description="Verifiers and shaping.")
    advantages: AdvantageConfig = Field(default_factory=AdvantageConfig, description="Advantage estimation.")
    loss: LossConfig = Field(default_factory=CispoLoss, description="Policy loss, picked by `type`.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Learner.")
    warmup: WarmupConfig = Field(default_factory=WarmupConfig, description="Supervised warm-up.")
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig, description="Numerics.")
    placement: PlacementConfig = Field(default_factory=PlacementConfig, description="Where actors run.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Experiment tracking: metrics.jsonl, TensorBoard, W&B, MLflow.")

    @model_validator(mode="before")
    @classmethod
    def _default_loss_type(cls, data: Any) -> Any:
        """A ``loss`` section without ``type`` is CISPO (the toolkit's default)."""
        if isinstance(data, dict) and isinstance(data.get("loss"), dict) and "type" not in data["loss"]:
            data = {**data, "loss": {"type": "cispo", **data["loss"]}}
        return data

    @model_validator(mode="after")
    def _lengths_fit(self):
        ro = self.rollout
        longest = max(ro.length_windows.windows) if ro.length_windows else ro.max_new_tokens
        if ro.length_windows and longest > ro.max_new_tokens:
            raise ValueError(f"rollout.length_windows.windows go up to {longest} tokens but "
                             f"rollout.max_new_tokens is {ro.max_new_tokens}; set it to the largest window")
        if isinstance(ro.engine, VLLMEngineConfig) and ro.engine.max_model_len is not None \
                and ro.engine.max_model_len <= longest:
            raise ValueError(f"rollout.engine.max_model_len={ro.engine.max_model_len} leaves no "
                             f"room for a prompt and {longest} new tokens (the largest window)")
        return self

    @model_validator(mode="after")
    def _tensor_parallel_fits_placement(self):
        engine, p = self.rollout.engine, self.placement
        tp = getattr(engine, "tensor_parallel_size", 1)
        if tp > 1 and (p.mode != "separate" or p.rollout_gpus != tp):
            raise ValueError(f"rollout.engine.tensor_parallel_size={tp} needs each engine on its "
                             f"own {tp} GPUs: placement.mode=separate and placement.rollout_gpus="
                             f"{tp} (got mode={p.mode}, rollout_gpus={p.rollout_gpus})")
        return self

    @model_validator(mode="after")
    def _async_fits_placement(self):
        t = self.train
        if t.async_mode == "off":
            return self
        if self.placement.engines_sleep:
            raise ValueError("train.async_mode=one_step overlaps generation with training, which "
                             "cannot happen while the engines sleep: placement.mode=colocated "
                             "shares the GPUs and its engines sleep while the learners train "
                             "(placement.engine_sleep=true). Use placement.engine_sleep=false "
                             "(both stay resident on the shared GPU), placement.mode=separate, "
                             "or train.async_mode=off")
        if t.max_staleness < 1:
            raise ValueError(f"train.async_mode=one_step trains on samples one policy version "
                             f"old: it needs train.max_staleness >= 1 (got {t.max_staleness})")
        return self

    @model_validator(mode="after")
    def _sync_fits_placement(self):
        ws, mode, engine = self.placement.weight_sync, self.placement.mode, self.rollout.engine
        need = GPU_TRANSPORTS.get(ws)
        if need and (mode != need or ws not in engine.weight_transports):
            able = "|".join(_tag(e) for e in engine_sections() if ws in e.weight_transports)
            raise ValueError(f"placement.weight_sync={ws} needs placement.mode={need} and "
                             f"rollout.engine={able} (got mode={mode}, engine={engine.type})")
        return self


# ---------------------------------------------------------------------------------------
class RecipeError(ValueError):
    """Every problem found in a recipe, one per line."""

    def __init__(self, source: str, errors: list[str]):
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))


def apply_override(data: dict, dotted: str) -> None:
    """``a.b.c=value``: the value is parsed as YAML (numbers, booleans, null, lists)."""
    if "=" not in dotted:
        raise RecipeError("override", [f"{dotted!r} is not of the form key.path=value"])
    key, raw = dotted.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise RecipeError("override", [f"{key}: {part!r} is not a section"])
        node = nxt
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _model_at(loc: tuple, root: type[BaseModel], data: dict) -> type[BaseModel] | None:
    """The config class at a location (for unknown-key suggestions)."""
    model: Any = root
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else {}
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return model if part == loc[-1] else None
        node = node.get(part, {}) if isinstance(node, dict) else {}
        model = _resolve(field.annotation, node)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _resolve(annotation: Any, node: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if not args:
        return annotation
    if typing.get_origin(annotation) is Annotated:
        return _resolve(args[0], node)
    if typing.get_origin(annotation) is list:
        return _resolve(args[0], node)
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    for m in models:  # a discriminated union: pick by `type`
        t = m.model_fields.get("type")
        if t is not None and isinstance(node, dict) and node.get("type") == t.default:
            return m
    return models[0] if len(models) == 1 else (args[0] if len(args) == 1 else None)


def _format_errors(exc: ValidationError, data: dict) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _TAGS))
        path = ".".join(str(p) for p in loc) or "(recipe)"
        if err["type"] == "extra_forbidden" and (moved := _engine_option(loc, data)):
            out.append(f"{path}: {moved}")
        elif err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1], Recipe, data)
            valid = sorted(parent.model_fields) if parent else []
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {'.'.join(map(str, loc[:-1] + (near[0],)))!r}?" if near else ""
            out.append(f"{path}: unknown key{hint} (valid keys: {', '.join(valid)})")
        elif err["type"] == "union_tag_not_found":
            out.append(f"{path}: missing `type:` key that picks the variant")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
            out.append(f"{path}: {err['msg']}{shown}")
    return out


def _engine_option(loc: tuple, data: dict) -> str | None:
    """For an unknown key that is an option of some engine: where it goes (the form before
    ``rollout.engine`` was a section had engine options in ``rollout`` and
    ``rollout.repetition_stop``)."""
    key, parent = loc[-1], loc[:-1]
    owners = [_tag(e) for e in engine_sections() if key in e.model_fields and key != "type"]
    if not owners:
        return None
    example = f"engine: {{type: {owners[0]}, {key}: ...}}"
    if parent in (("rollout",), ("rollout", "repetition_stop")):
        return (f"moved to rollout.engine.{key}, an option of the {' and '.join(owners)} engine "
                f"({example})")
    if parent == ("rollout", "engine"):
        node = data.get("rollout", {}).get("engine")
        this = node.get("type") if isinstance(node, dict) else node
        return (f"not an option of the {this} engine but of the {' and '.join(owners)} "
                f"engine ({example})")
    return None


def _tag(section: type[BaseModel]) -> str:
    """The ``type`` value that picks a variant of a discriminated union."""
    return section.model_fields["type"].default


def _variants(union: Any) -> tuple[type[BaseModel], ...]:
    return typing.get_args(typing.get_args(union)[0])  # Annotated[A | B, Field(...)]


# every variant tag, as pydantic puts it into error locations (dropped from the key paths)
_TAGS = {_tag(v) for u in (DataSource, LossConfig, EngineConfig) for v in _variants(u)}


def parse_recipe(data: dict, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(source, ["the recipe must be a YAML mapping of sections"])
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(source, _format_errors(exc, data)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(str(p), [f"recipe file {str(p)!r} does not exist"])
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(str(p), [f"not valid YAML: {exc}"]) from None
    for ov in overrides or []:
        apply_override(data, ov)
    recipe = parse_recipe(data, str(p))
    given = [ov.split("=", 1)[0].strip() for ov in overrides or []]
    return resolve_paths(recipe, p.resolve().parent, given)


def resolve_paths(recipe: Recipe, recipe_dir: Path, overridden: Sequence[str] = ()) -> Recipe:
    """Relative input paths (fields marked ``path``: model.path, data.*.path) made absolute:
    against the recipe file's directory, or the working directory for values given on the
    command line (``overridden``: the dotted keys of the overrides). ``run.output_dir`` stays
    relative to the working directory."""
    def from_cli(key: str) -> bool:
        return any(key == o or key.startswith(o + ".") for o in overridden)

    def walk(model: BaseModel, prefix: str) -> BaseModel:
        updates: dict[str, Any] = {}
        for name, field in type(model).model_fields.items():
            value, key = getattr(model, name), prefix + name
            if isinstance(value, BaseModel):
                new = walk(value, key + ".")
                if new is not value:
                    updates[name] = new
            elif isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("path") \
                    and isinstance(value, str) and not Path(value).is_absolute():
                base = Path.cwd() if from_cli(key) else recipe_dir
                updates[name] = os.path.abspath(base / value)
        return model.model_copy(update=updates) if updates else model

    return typing.cast(Recipe, walk(recipe, ""))


def check_resources(recipe: Recipe, base_dir: Path | None = None) -> list[str]:
    """Problems that need the file system: missing model directory, missing or empty data."""
    errors = []
    if recipe.model.path is not None:
        errors += [f"model.path: {e}" for e in check_model_dir(recipe.model.path)]
    for name in ("train", "eval", "warmup"):
        src = getattr(recipe.data, name)
        if isinstance(src, FileData):
            p = Path(src.path)
            if not p.exists():
                errors.append(f"data.{name}.path: {src.path!r} does not exist")
            elif p.is_file() and p.stat().st_size == 0:
                errors.append(f"data.{name}.path: {src.path!r} is empty")
    return errors


def check_model_dir(path: str | Path) -> list[str]:
    """Problems with a local checkpoint directory (empty list when it looks loadable)."""
    p = Path(path)
    if not p.exists():
        return [f"model directory {str(p)!r} does not exist"]
    if not p.is_dir():
        return [f"model path {str(p)!r} is not a directory"]
    if not (p / "config.json").exists():
        return [f"model directory {str(p)!r} has no config.json (expected a Hugging Face "
                "checkpoint directory)"]
    return []
