"""The rollout role: one engine per actor. The driver-side group handle lives in
``rlhf.driver.roles.RolloutGroup``; this class is what runs inside each actor."""

from __future__ import annotations

import time
from typing import Any

from rollout.base import Completion, EngineSetup, SamplingConfig
from rollout.engines import EngineConfig


class RolloutWorker:
    """``engine``: its recipe section (rollout/engines.py), which builds it with ``setup``."""

    def __init__(self, engine: EngineConfig, model_path: str, setup: EngineSetup,
                 num_threads: int = 1):
        import torch
        from transformers import AutoTokenizer

        torch.set_num_threads(max(1, num_threads))
        self.engine = engine.build(model_path, setup)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_path)
        self.version = 0

    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int] | None = None) -> list[Completion]:
        outs = self.engine.generate(prompt_token_ids, sampling, seeds)
        for c in outs:
            c.policy_version = self.version
            c.text = self.tokenizer.decode(c.token_ids, skip_special_tokens=True)
        return outs

    def update_weights(self, named_tensors: dict, version: int) -> float:
        t0 = time.perf_counter()
        self.engine.update_weights(named_tensors)
        self.version = version
        return time.perf_counter() - t0

    def init_weight_transfer(self, master_address: str, master_port: int, rank_offset: int,
                             world_size: int) -> None:
        self.engine.init_weight_transfer(master_address, master_port, rank_offset, world_size)

    def receive_weights(self, update_info: dict, version: int) -> float:
        """A learner-initiated transfer (CUDA IPC handles or an NCCL broadcast)."""
        t0 = time.perf_counter()
        self.engine.receive_weights(update_info)
        self.version = version
        return time.perf_counter() - t0

    def sleep(self) -> None:
        self.engine.sleep()

    def wake_up(self) -> None:
        self.engine.wake_up()

    def ping(self) -> int:
        return self.version
