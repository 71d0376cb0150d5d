"""The vLLM engine (GPU), behind the same interface as the transformers engine.

Imported only when a recipe asks for ``rollout.engine: vllm`` (vLLM 0.26); its options are
:class:`rollout.engines.VLLMEngineConfig`, the run's settings :class:`rollout.base.EngineSetup`.
What it returns matches
:class:`rollout.hf_engine.HFEngine`: the sampled token ids, the sampler's *raw* log-probability
of each (vLLM's default ``logprobs_mode`` is ``raw_logprobs``: before temperature and top-p), a
finish reason, one seed per prompt. Token ids go in and out
(``TokensPrompt``); nothing is re-tokenized.

* FP32 LM head: vLLM's ``hf_overrides={"head_dtype": "float32"}`` (bf16 operands, float32
  accumulation and logits), which the learner's chunked head reproduces (rlhf/learner/logprobs.py).
* M1's repetition stop is always applied to the returned raw logprobs
  (:func:`truncate_repetition`): the sample is cut after the token at which the rule fires and
  its finish reason is ``repetition``. ``decode_time`` also runs it while decoding:
  ``"abort"`` makes each sample its own request streaming its new tokens' logprobs every engine
  step (:meth:`VLLMEngine._generate_abort`) and aborts it the step the rule fires, so it leaves
  the batch; ``"processor"`` registers :class:`rollout.vllm_repetition.RepetitionStopLogitsProcessor`,
  which forces EOS, but a custom logits processor moves vLLM 0.26 to its V1 model runner
  (10-30% slower decoding measured on an H100). ``"auto"`` (the default) aborts when a call's
  batch needs more KV than the engine's cache holds (:meth:`VLLMEngine.abort_pays`), where a
  stopped loop frees blocks for a waiting request (1.11-1.28x faster rollouts measured on an
  H200, benchmarks/GPU_RESULTS.md section 12), and cuts post hoc otherwise, where streaming
  costs ~8% (section 8). Recipe switch: ``rollout.engine.decode_time``.
* Weights: ``update_weights`` loads a Hugging Face-named state dict in place, over CUDA IPC
  when the tensors are on this engine's GPU and the run's transport is ``ipc``
  (``EngineSetup.weight_transfer``), else through ``collective_rpc`` (the tensors travel pickled).
  ``receive_weights`` takes one transfer sent by a learner in another process (CUDA IPC handles,
  or an NCCL bucketed broadcast after ``init_weight_transfer``; see rlhf/weight_sync.py). Either
  way the prefix cache, whose KV came from the old weights, is dropped.
* ``sleep`` / ``wake_up``: sleep level 1 (weights to CPU, KV cache freed) for colocated
  placement; needs ``EngineSetup.sleep_mode``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rollout.base import Completion, EngineSetup, FinishReason, SamplingConfig, model_stop_ids
from rollout.engines import VLLMEngineConfig
from rollout.repetition import StreamingRepetition, first_repetition_stop


def truncate_repetition(token_ids: list[int], logprobs: list[float], reason: FinishReason,
                        window: int, prob: float) -> tuple[list[int], list[float], FinishReason]:
    """Cut a finished sample after the first token at which M1's rule fires.

    Whatever follows that token is dropped: the EOS that the decode-time processor forced (its
    logprob is the raw one, not a sample's), or the tail of a sample that ran on because the
    rule was not active in the engine. Samples where the rule never fires are returned as is.
    """
    stop = first_repetition_stop(logprobs, window, prob)
    if stop is None:
        return token_ids, logprobs, reason
    return token_ids[:stop + 1], logprobs[:stop + 1], "repetition"


def sampled_logprobs(token_ids: list[int], logprobs) -> list[float]:
    """The raw logprob of each sampled token, from vLLM's per-position record: a ``FlatLogprobs``
    (``flat_logprobs=True``: flat lists, the sampled token first at each position; no Python
    object per token) or a list of ``{token: Logprob}`` dicts."""
    if not token_ids:  # (vLLM slices a delta's logprobs with [-len(ids):], all of them for 0)
        return []
    starts = getattr(logprobs, "start_indices", None)
    if starts is None:
        return [float(step[tok].logprob) for tok, step in zip(token_ids, logprobs or [])]
    if [logprobs.token_ids[i] for i in starts] != list(token_ids):
        raise RuntimeError("vLLM's flat logprobs do not start with the sampled tokens")
    return [logprobs.logprobs[i] for i in starts]


@dataclass
class _Stream:
    """One sample of the abort path: what has arrived so far and M1's rule on it."""
    prompt_index: int
    watch: StreamingRepetition
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: FinishReason | None = None  # set when the engine finishes it (None: aborted)

    def completion(self) -> Completion:
        stop = self.watch.stop
        engine = {"engine_finish": "abort" if stop is not None else self.finish,
                  "engine_tokens": len(self.ids)}
        if stop is None:
            assert self.finish is not None, "a sample ends finished by the engine or aborted"
            return Completion(self.prompt_index, self.ids, self.logprobs, self.finish, extra=engine)
        return Completion(self.prompt_index, self.ids[:stop + 1], self.logprobs[:stop + 1],
                          "repetition", extra=engine)


class VLLMEngine:
    def __init__(self, model_path: str, options: VLLMEngineConfig | None = None,
                 setup: EngineSetup | None = None, **llm_kwargs):
        options, setup = options or VLLMEngineConfig(), setup or EngineSetup()
        # callable RPCs and IPC handles are pickled; the engine process reads this at start
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        from vllm import LLM

        kw = dict(model=model_path, dtype=setup.dtype,
                  gpu_memory_utilization=options.gpu_memory_utilization,
                  enable_sleep_mode=setup.sleep_mode, seed=setup.seed, **llm_kwargs)
        if options.tensor_parallel_size > 1:
            kw["tensor_parallel_size"] = options.tensor_parallel_size
        for name in ("enable_prefix_caching", "max_num_seqs"):  # None: vLLM's own default
            if getattr(options, name) is not None:
                kw[name] = getattr(options, name)
        if setup.lm_head_fp32:
            kw["hf_overrides"] = {**kw.get("hf_overrides", {}), "head_dtype": "float32"}
        max_model_len = options.max_model_len or setup.context_len
        if max_model_len:
            kw["max_model_len"] = max_model_len
        if options.decode_time == "processor":
            from rollout.vllm_repetition import RepetitionStopLogitsProcessor

            kw["logits_processors"] = [RepetitionStopLogitsProcessor]
        if setup.weight_transfer:
            kw["weight_transfer_config"] = {"backend": setup.weight_transfer}
        self.llm = LLM(**kw)
        self.eos_ids = model_stop_ids(model_path)
        self.decode_time = options.decode_time
        self.weight_transfer = setup.weight_transfer
        self.sleeping = False

    # ---- generation ----------------------------------------------------------------------
    def sampling_params(self, sampling: SamplingConfig, seed: int | None):
        from vllm import SamplingParams

        extra = None
        if self.decode_time == "processor" and sampling.repetition_window > 0 and self.eos_ids:
            from rollout.vllm_repetition import repetition_args

            extra = repetition_args(sampling.repetition_window, sampling.repetition_prob,
                                    self.eos_ids[0])
        stop = list(dict.fromkeys([*sampling.stop_token_ids, *self.eos_ids]))
        return SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                              top_k=sampling.top_k if sampling.top_k > 0 else 0,
                              min_p=sampling.min_p,
                              max_tokens=sampling.max_tokens, seed=seed, logprobs=0,
                              stop_token_ids=stop or None, extra_args=extra,
                              # token ids out; the rollout worker decodes the text once
                              detokenize=False, flat_logprobs=True)

    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seeds: list[int] | None = None) -> list[Completion]:
        from vllm import TokensPrompt

        params = [self.sampling_params(sampling, seeds[i] if seeds is not None else sampling.seed)
                  for i in range(len(prompt_token_ids))]
        abort = self.decode_time == "abort" or (self.decode_time == "auto"
                                                and self.abort_pays(prompt_token_ids, sampling))
        if abort and sampling.repetition_window > 0:
            return self._generate_abort(prompt_token_ids, params, sampling)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_token_ids],
                                 params, use_tqdm=False)
        result = []
        for i, out in enumerate(outs):  # vLLM returns requests in submission order
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = sampled_logprobs(ids, c.logprobs)  # [T]
                reason: FinishReason = "stop" if c.finish_reason == "stop" else "length"
                engine = {"engine_finish": reason, "engine_tokens": len(ids)}  # before the cut
                ids, lps, reason = truncate_repetition(ids, lps, reason, sampling.repetition_window,
                                                       sampling.repetition_prob)
                result.append(Completion(i, ids, lps, reason, extra=engine))
        return result

    def kv_cache_tokens(self) -> int:
        """Tokens the engine's KV cache holds (its blocks x block size, as vLLM sized them)."""
        cache = self.llm.llm_engine.vllm_config.cache_config
        return (cache.num_gpu_blocks or 0) * (cache.block_size or 16)

    def abort_pays(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig) -> bool:
        """``decode_time: auto``: abort when the batch at full length (every sample's prompt +
        ``max_tokens``) does not fit in the KV cache at once, so requests wait for blocks."""
        need = sum(len(p) + sampling.max_tokens for p in prompt_token_ids) * sampling.n
        return need > self.kv_cache_tokens()

    def _generate_abort(self, prompt_token_ids, params, sampling: SamplingConfig) -> list[Completion]:
        """M1's rule at decode time without touching the sampler: every sample is its own
        request (seed + j for sample j, which is how vLLM seeds the children of an ``n > 1``
        request) streaming its new tokens' logprobs each engine step; the step the rule fires,
        the request is aborted and leaves the batch. The V2 model runner stays in use."""
        from copy import copy

        from vllm import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        self._calls = getattr(self, "_calls", 0) + 1
        streams: dict[str, _Stream] = {}
        for i, (ids, sp) in enumerate(zip(prompt_token_ids, params)):
            for j in range(sp.n):
                child = copy(sp)
                child.n, child.output_kind = 1, RequestOutputKind.DELTA
                child.seed = None if sp.seed is None else sp.seed + j
                rid = f"m1rl-{self._calls}-{i}-{j}"
                streams[rid] = _Stream(i, StreamingRepetition(sampling.repetition_window,
                                                              sampling.repetition_prob))
                engine.add_request(rid, TokensPrompt(prompt_token_ids=list(ids)), child)
        while engine.has_unfinished_requests():
            for out in engine.step():
                st, c = streams[out.request_id], out.outputs[0]
                new = list(c.token_ids)
                new_lps = sampled_logprobs(new, c.logprobs)
                st.ids += new
                st.logprobs += new_lps
                if st.watch.feed(new_lps):
                    engine.abort_request([out.request_id])
                elif out.finished:
                    st.finish = "stop" if c.finish_reason == "stop" else "length"
        return [st.completion() for st in streams.values()]

    # ---- weights -------------------------------------------------------------------------
    def update_weights(self, named_tensors: dict) -> None:
        """Load Hugging Face-named weights in place (no restart)."""
        items = list(named_tensors.items())
        on_gpu = bool(items) and all(getattr(t, "is_cuda", False) for _, t in items)
        if self.weight_transfer == "ipc" and on_gpu:
            self._update_ipc(items)
        else:
            self.llm.collective_rpc(lambda w: w.model_runner.reload_weights(weights_iterator=items))
        self.llm.reset_prefix_cache()

    def init_weight_transfer(self, master_address: str, master_port: int, rank_offset: int,
                             world_size: int) -> None:
        """NCCL backend: join the trainer's group (the trainer is rank 0; blocks until all
        members have joined, so the trainer must be joining concurrently)."""
        self.llm.init_weight_transfer_engine({"init_info": dict(
            master_address=master_address, master_port=master_port, rank_offset=rank_offset,
            world_size=world_size)})

    def receive_weights(self, update_info: dict) -> None:
        """One transfer from the trainer through the engine's weight-transfer backend: CUDA IPC
        handles (``ipc``) or a bucketed broadcast the trainer is sending (``nccl``)."""
        self.llm.start_weight_update()
        self.llm.update_weights({"update_info": update_info})
        self.llm.finish_weight_update()
        self.llm.reset_prefix_cache()

    def _update_ipc(self, items: list) -> None:
        from dataclasses import asdict

        from vllm.distributed.weight_transfer.ipc_engine import IPCWeightTransferEngine

        self.llm.start_weight_update()
        IPCWeightTransferEngine.trainer_send_weights(
            iter(items), {"send_mode": lambda info: self.llm.update_weights(
                {"update_info": asdict(info)})})
        self.llm.finish_weight_update()

    # ---- memory --------------------------------------------------------------------------
    def sleep(self) -> None:
        if not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False
