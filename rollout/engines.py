"""The engine sections of a recipe (``rollout.engine``): one per engine, picked by ``type``, each
holding that engine's own options and building the engine. A new engine is its module plus a
section here, added to :data:`EngineConfig`: ``implementation`` names the engine class by import
path (imported only when built, so vLLM is needed only where it runs, and the engine modules
import this one, not the other way round), ``weight_transports`` says which learner -> engine
transports it can receive (rlhf/weight_sync.py)::

    rollout:
      engine: {type: vllm, gpu_memory_utilization: 0.5, decode_time: abort}

What the run decides for every engine (dtype, head precision, seed, sleep mode, the transport,
the data's context length) is :class:`rollout.base.EngineSetup`, not an option here.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollout.base import Engine, EngineSetup


class EngineSection(BaseModel):
    """The base of every engine section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)
    implementation: ClassVar[str]  # "module:Class", built as Class(model_path, section, setup)
    weight_transports: ClassVar[frozenset[str]]  # transports the engine can receive

    def build(self, model_path: str, setup: EngineSetup) -> Engine:
        return engine_class(self)(model_path, self, setup)


def engine_class(section: EngineSection) -> Any:
    """The engine class a section names (its module imported now)."""
    module, _, name = section.implementation.partition(":")
    return getattr(importlib.import_module(module), name)


class HFEngineConfig(EngineSection):
    """transformers, its own decode loop on the CPU (tests, laptops)."""

    type: Literal["hf"] = "hf"
    max_batch_rows: int = Field(256, ge=1, description="Rows (prompt x sample) decoded together.")

    implementation: ClassVar[str] = "rollout.hf_engine:HFEngine"
    weight_transports: ClassVar[frozenset[str]] = frozenset({"object_store"})


class VLLMEngineConfig(EngineSection):
    """vLLM on a GPU (rollout/vllm_engine.py)."""

    type: Literal["vllm"] = "vllm"
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0, description="KV-cache share of the GPU.")
    max_model_len: int | None = Field(None, ge=16, description="Context length (default: the longest prompt in the data + rollout.max_new_tokens, which covers the largest length window).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs each engine shards the model over (vLLM tensor parallelism; needs placement.mode=separate and placement.rollout_gpus equal to it).")
    enable_prefix_caching: bool | None = Field(None, description="vLLM's automatic prefix caching (the G samples of a prompt share its KV); null: vLLM's default. Dropped after every weight update either way.")
    max_num_seqs: int | None = Field(None, ge=1, description="Most sequences vLLM decodes at once; null: vLLM's default.")
    decode_time: Literal["auto", "off", "abort", "processor"] = Field("auto", description="M1's repetition stop (rollout.repetition_stop) while decoding, instead of cutting loops from the returned samples. abort: each sample streams its logprobs every engine step and is aborted when the rule fires (keeps vLLM's V2 model runner); off: the rule cuts the returned samples (post hoc); auto: abort when a call's batch at full length needs more KV than the engine's cache holds (an aborted loop then frees blocks for waiting requests: 1.11-1.28x faster measured on an H200), else off (streaming costs ~8% when nothing waits); processor: a logits processor forces EOS (moves vLLM 0.26 to its V1 runner, measured 10-30% slower on H100). true means abort, false off.")

    implementation: ClassVar[str] = "rollout.vllm_engine:VLLMEngine"
    weight_transports: ClassVar[frozenset[str]] = frozenset({"object_store", "ipc", "nccl"})

    @field_validator("decode_time", mode="before")
    @classmethod
    def _bool_means_abort(cls, v: Any) -> Any:
        return {True: "abort", False: "off"}.get(v, v) if isinstance(v, bool) else v


EngineConfig = Annotated[HFEngineConfig | VLLMEngineConfig, Field(discriminator="type")]


def engine_sections() -> tuple[type[EngineSection], ...]:
    """Every engine section of :data:`EngineConfig`."""
    return get_args(get_args(EngineConfig)[0])
