"""The generation-engine interface shared by the transformers (CPU) and vLLM (GPU) engines.

Shapes, with one key across rollout/ and rlhf/: ``N`` rows (responses; in a decode batch, the
prompt x sample rows), ``G`` responses per prompt (``SamplingConfig.n``), ``T`` tokens (of a
response; ``T_seq`` of prompt + response, ``T_prompt`` of a padded prompt), ``V`` vocabulary, and
inside a model ``H`` hidden size. A request is one prompt's token ids. Log-probabilities are
the sampler's *raw* log-probabilities of the sampled tokens (before temperature and top-p), so
the learner's ``old_logprobs`` can be compared with them (M1's mismatch metric).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "repetition"]


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: ``n`` samples per prompt, each at most ``max_tokens`` tokens. The filters
    (temperature, then min-p, then top-k and top-p, as vLLM applies them) shape what is sampled;
    the logprobs returned stay raw."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0  # keep tokens with p >= min_p x the top token's p (0: off)
    max_tokens: int = 256
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    # M1's early truncation: stop once `repetition_window` consecutive tokens each had
    # probability > `repetition_prob`. 0 disables it.
    repetition_window: int = 3000
    repetition_prob: float = 0.99


@dataclass(frozen=True)
class EngineSetup:
    """What the run decides for every engine, whatever its type (each engine's own options are
    its section of ``rollout.engine``, rollout/engines.py)."""

    dtype: str = "float32"  # compute dtype of the weights (model.dtype)
    lm_head_fp32: bool = True  # precision.lm_head_fp32: the head in FP32, as on the learner
    seed: int = 0  # run.seed
    sleep_mode: bool = False  # colocated placement: engines sleep while the learners train
    weight_transfer: str | None = None  # "ipc" | "nccl": learner-initiated; None: object store
    context_len: int | None = None  # longest prompt in the data + the response budget


@dataclass
class Completion:
    """One sampled response: token ids, raw log-probabilities of those tokens, finish reason,
    and the index of the prompt it answers. The rollout worker adds the policy version that
    sampled it and the decoded ``text``; ``extra`` holds engine diagnostics (vLLM:
    ``engine_finish``, ``engine_tokens`` before a post-hoc repetition cut)."""

    prompt_index: int
    token_ids: list[int]
    logprobs: list[float]  # [T]
    finish_reason: FinishReason
    policy_version: int = 0
    text: str = ""
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int] | None = None) -> list[Completion]:
        """``n`` completions for each prompt, ordered prompt by prompt. ``seeds[i]`` seeds
        prompt i's samples so that a prompt re-issued elsewhere draws the same samples
        (without ``seeds``: ``sampling.seed``). The rollout worker and the driver's rollout
        group take the same arguments in the same order."""
        ...

    def update_weights(self, named_tensors: dict) -> None:
        """Load a full, Hugging Face-named state dict in place (the object-store transport)."""
        ...

    def init_weight_transfer(self, master_address: str, master_port: int, rank_offset: int,
                             world_size: int) -> None:
        """Join the learner's NCCL group as rank ``rank_offset`` (the learner is rank 0);
        blocks until every member has joined. An engine without learner-initiated transfers
        raises ``NotImplementedError``."""
        ...

    def receive_weights(self, update_info: dict) -> None:
        """One learner-initiated transfer (CUDA IPC handles, or an NCCL broadcast the learner
        is sending): rlhf/weight_sync.py. Same refusal as ``init_weight_transfer``."""
        ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...


def model_stop_ids(model_path: str) -> list[int]:
    """The ids a generation stops at: ``eos_token_id`` of generation_config.json and of
    config.json, each an id or a list of ids (Llama-3 style), generation_config.json's first.
    Both engines stop on all of them (vLLM skips the tokenizer, so it gets them as stop
    tokens)."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        f = Path(model_path, name)
        if f.exists():
            eos = json.loads(f.read_text()).get("eos_token_id")
            for e in (eos if isinstance(eos, list) else [eos]):
                if e is not None and int(e) not in ids:
                    ids.append(int(e))
    return ids
