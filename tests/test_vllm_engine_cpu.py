"""The vLLM engine's pure-Python parts, without vLLM: the post-hoc repetition read-back, the
decode-time rule (top logprob + argmax, compared one step later), and the logits processor
driven through a scripted decode loop on CPU tensors."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch

from rollout.base import model_stop_ids
from rollout.repetition import first_repetition_stop
from rollout.vllm_engine import truncate_repetition
from rollout.vllm_repetition import (
    RepetitionStopLogitsProcessor,
    confident_run_rule,
    repetition_args,
)

pytestmark = pytest.mark.unit

HI, LO = math.log(0.999), math.log(0.2)
EOS = 7


def test_truncate_repetition_drops_the_forced_eos():
    ids = list(range(10))
    lps = [LO, LO] + [HI] * 5 + [math.log(1e-4)]  # EOS forced after 5 confident tokens
    out = truncate_repetition(ids[:8], lps, "stop", 5, 0.99)
    assert out == (ids[:7], lps[:7], "repetition")
    # a natural stop, a window that is never reached, a disabled rule: unchanged
    assert truncate_repetition(ids[:8], lps, "stop", 6, 0.99) == (ids[:8], lps, "stop")
    assert truncate_repetition(ids[:8], lps, "length", 0, 0.99) == (ids[:8], lps, "length")
    # a rule that was not active in the engine: the tail after the firing token goes too
    long = [LO] + [HI] * 9
    assert truncate_repetition(ids, long, "length", 3, 0.99) == (ids[:4], long[:4], "repetition")


def _step_stats(logits: torch.Tensor):
    logp = torch.log_softmax(logits.double(), -1)
    top, arg = logp.max(-1)
    return logp, top, arg


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.99])
def test_argmax_rule_equals_the_sampled_token_rule(prob):
    """p(x_t) > p  <=>  max p_t > p and x_t == argmax, for p >= 0.5: the per-step rule fires at
    the same token as M1's rule on the sampled tokens' own logprobs."""
    g = torch.Generator().manual_seed(int(prob * 100))
    for trial in range(40):
        T, V = 80, 6
        scale = torch.where(torch.rand(T, 1, generator=g) < 0.7, 12.0, 1.0)  # peaked most steps
        logits = torch.randn(T, V, generator=g) * scale
        logp, top, arg = _step_stats(logits)
        tokens = torch.multinomial(logp.exp(), 1, generator=g)[:, 0]
        sampled = logp.gather(-1, tokens[:, None])[:, 0]
        window = 1 + trial % 7
        ref = first_repetition_stop(sampled.tolist(), window, prob)
        got = confident_run_rule(tokens.tolist(), top.tolist(), arg.tolist(), window, prob)
        assert got == ref


def _proc(max_num_seqs=8):
    cfg = SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=max_num_seqs))
    return RepetitionStopLogitsProcessor(cfg, torch.device("cpu"), False)


def _update(batch_size, added=(), removed=(), moved=()):
    return SimpleNamespace(batch_size=batch_size, added=list(added), removed=list(removed),
                           moved=list(moved))


def _params(window, prob=0.99, max_tokens=1000, on=True):
    return SimpleNamespace(max_tokens=max_tokens,
                           extra_args=repetition_args(window, prob, EOS) if on else None)


def _decode(proc, rows, steps, logits_fn, gen, discard=None):
    """A scripted decode loop: ``rows[b]`` is batch row b's output list. Returns, per row, the
    raw logprobs of its sampled tokens and the step at which EOS was forced (or None)."""
    raw = [[] for _ in rows]
    forced = [None] * len(rows)
    done = [False] * len(rows)
    for t in range(steps):
        logits = logits_fn(t)  # [B, V]
        out = proc.apply(logits.clone())
        logp = torch.log_softmax(logits.double(), -1)
        for b, ids in enumerate(rows):
            if done[b]:
                continue
            if torch.isinf(out[b]).sum() == out.shape[1] - 1:  # every logit but EOS masked
                assert out[b].argmax().item() == EOS
                forced[b], done[b] = len(ids), True
                continue
            if discard and discard(t, b):  # a partial-prefill step: sample thrown away
                continue
            tok = int(torch.multinomial(torch.softmax(out[b].double(), -1), 1, generator=gen))
            ids.append(tok)
            raw[b].append(float(logp[b, tok]))
        proc.update_state(None)
    return raw, forced


@pytest.mark.parametrize("seed", range(6))
def test_processor_forces_eos_exactly_where_the_rule_fires(seed):
    B, V, window = 4, 9, 5
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    peaked = [[rng.random() < 0.75 for _ in range(60)] for _ in range(B)]
    base = torch.randn(60, B, V, generator=gen)
    for t in range(60):
        for b in range(B):
            if peaked[b][t]:
                base[t, b, (t * 3 + b) % V] += 14.0  # p(top) > 0.999
    proc = _proc()
    rows = [[] for _ in range(B)]
    proc.update_state(_update(B, added=[(b, _params(window), [1, 2], rows[b]) for b in range(B)]))
    raw, forced = _decode(proc, rows, 60, lambda t: base[t], gen)
    for b in range(B):
        stop = first_repetition_stop(raw[b], window, 0.99)
        assert forced[b] == (None if stop is None else stop + 1), (b, raw[b])
        if stop is not None:
            ids, _, reason = truncate_repetition(rows[b] + [EOS], raw[b] + [-9.0], "stop",
                                                 window, 0.99)
            assert reason == "repetition" and len(ids) == stop + 1


def test_processor_follows_moves_removals_and_discarded_samples():
    V, window = 9, 3
    gen = torch.Generator().manual_seed(0)
    proc = _proc()
    a, b, c = [], [], []
    proc.update_state(_update(3, added=[(0, _params(window), None, a), (1, _params(window), None, b),
                                        (2, _params(window, on=False), None, c)]))
    assert proc.active_rows() == {0, 1}  # row 2 did not ask for the rule
    confident = torch.full((3, V), -20.0)
    confident[:, 2] = 20.0
    # two confident tokens each, then rows 0 and 1 swap places; row 0 (now at 1) loses a sample
    # to a partial prefill, which must not break its run
    _decode(proc, [a, b, c], 2, lambda t: confident, gen)
    proc.update_state(_update(3, moved=[(0, 1, SimpleNamespace(name="SWAP"))]))
    assert proc.out[1] is a and proc.out[0] is b
    _, forced = _decode(proc, [b, a, c], 3, lambda t: confident, gen,
                        discard=lambda t, row: t == 0 and row == 1)
    assert len(b) == 3 and forced[0] == 3  # b: 3 confident tokens, then EOS
    assert len(a) == 3 and forced[1] == 3  # a: a discarded sample did not count
    assert forced[2] is None and len(c) == 5  # c never stops
    proc.update_state(_update(2, removed=[2], moved=[(1, 0, SimpleNamespace(name="UNIDIRECTIONAL"))]))
    assert proc.active_rows() == {0} and proc.out[0] is a and proc.run[0] == 3


def test_processor_skips_rows_that_cannot_fire_and_validates():
    proc = _proc()
    proc.update_state(_update(2, added=[(0, _params(100, max_tokens=50), None, []),
                                        (1, _params(0), None, [])]))
    assert not proc.active_rows()
    logits = torch.randn(2, 5)
    assert proc.apply(logits) is logits
    RepetitionStopLogitsProcessor.validate_params(_params(10, prob=0.5))
    with pytest.raises(ValueError, match=r"\[0.5, 1\)"):
        RepetitionStopLogitsProcessor.validate_params(_params(10, prob=0.3))
    with pytest.raises(ValueError, match="window"):
        RepetitionStopLogitsProcessor.validate_params(
            SimpleNamespace(extra_args={"repetition_stop": {"window": 0, "prob": 0.9, "eos": 1}}))


def test_sampled_logprobs_reads_vllms_flat_and_dict_records():
    """``flat_logprobs=True``: flat lists, each position's sampled token first (here with a
    top-1 alternative after it at position 1); the dict form gives the same values."""
    from rollout.vllm_engine import sampled_logprobs

    flat = SimpleNamespace(start_indices=[0, 1, 3], token_ids=[5, 8, 2, 4],
                           logprobs=[-0.1, -0.7, -0.2, -1.5])
    assert sampled_logprobs([5, 8, 4], flat) == [-0.1, -0.7, -1.5]
    dicts = [{5: SimpleNamespace(logprob=-0.1)}, {2: SimpleNamespace(logprob=-0.2),
                                                  8: SimpleNamespace(logprob=-0.7)}]
    assert sampled_logprobs([5, 8], dicts) == [-0.1, -0.7]
    assert sampled_logprobs([], flat) == []  # an empty delta (vLLM's [-0:] slice is everything)
    with pytest.raises(RuntimeError, match="sampled tokens"):
        sampled_logprobs([5, 2, 4], flat)


def test_eos_ids_from_the_model_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 5}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [9, 5]}))
    assert model_stop_ids(str(tmp_path)) == [9, 5]


class _FakeLLMEngine:
    """vLLM's LLMEngine as the abort path uses it: one token per request per step, DELTA
    outputs with the sampled token's logprob; an aborted request leaves the batch at once."""

    def __init__(self, scripts):
        self.scripts, self.live, self.added, self.aborted, self.steps = scripts, {}, [], [], 0

    def add_request(self, rid, prompt, params):
        self.added.append((rid, params.seed, params.n, params.output_kind))
        self.live[rid] = iter(self.scripts(params.seed, params.max_tokens))

    def has_unfinished_requests(self):
        return bool(self.live)

    def abort_request(self, rids):
        self.aborted += rids
        for r in rids:
            self.live.pop(r)

    def step(self):
        self.steps += 1
        outs = []
        for rid, it in list(self.live.items()):
            tok, lp, last = next(it)
            c = SimpleNamespace(token_ids=[tok], logprobs=[{tok: SimpleNamespace(logprob=lp)}],
                                finish_reason="length" if last else None)
            outs.append(SimpleNamespace(request_id=rid, outputs=[c], finished=last))
            if last:
                self.live.pop(rid)
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    import enum
    import sys
    import types

    vllm = types.ModuleType("vllm")
    sp = types.ModuleType("vllm.sampling_params")
    sp.RequestOutputKind = enum.Enum("RequestOutputKind", "CUMULATIVE DELTA FINAL_ONLY")
    vllm.TokensPrompt = dict
    vllm.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    vllm.sampling_params = sp
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    return sp


def test_abort_path_stops_a_looping_sample_at_decode_time(fake_vllm):
    from rollout.base import SamplingConfig
    from rollout.vllm_engine import VLLMEngine

    def script(seed, max_tokens):  # the sample with seed 11 loops after 3 tokens
        for t in range(max_tokens):
            lp = HI if seed == 11 and t >= 3 else LO
            yield 100 + t, lp, t == max_tokens - 1

    fake = _FakeLLMEngine(script)
    eng = object.__new__(VLLMEngine)
    eng.llm, eng.eos_ids, eng.decode_time = SimpleNamespace(llm_engine=fake), [EOS], "abort"
    s = SamplingConfig(n=2, temperature=1.0, max_tokens=40, repetition_window=5, repetition_prob=0.99)
    outs = eng.generate([[1, 2], [3]], s, seeds=[10, 20])
    # one request per sample, seeded like vLLM's n>1 children (seed + j), streaming deltas
    assert [(a[1], a[2], a[3].name) for a in fake.added] == [
        (10, 1, "DELTA"), (11, 1, "DELTA"), (20, 1, "DELTA"), (21, 1, "DELTA")]
    assert [c.prompt_index for c in outs] == [0, 0, 1, 1]
    loop = outs[1]
    assert loop.finish_reason == "repetition" and len(loop.token_ids) == 3 + 5
    assert loop.logprobs == [LO] * 3 + [HI] * 5
    assert loop.extra == {"engine_finish": "abort", "engine_tokens": 8}  # left the batch at once
    assert fake.aborted == ["m1rl-1-0-1"]
    for c in (outs[0], outs[2], outs[3]):
        assert c.finish_reason == "length" and len(c.token_ids) == 40 and c.logprobs == [LO] * 40
    assert fake.steps == 40


def test_auto_decode_time_aborts_only_when_the_batch_overflows_the_kv_cache(fake_vllm):
    """``decode_time: auto`` (the default): abort where requests must wait for KV blocks
    (the batch at full length exceeds the cache), the plain path and the post-hoc cut otherwise."""
    from dataclasses import replace

    from rollout.base import SamplingConfig
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine

    assert VLLMEngineConfig().decode_time == "auto"
    calls = []
    eng = object.__new__(VLLMEngine)
    cache = SimpleNamespace(num_gpu_blocks=10, block_size=16)  # 160 tokens of KV
    eng.llm = SimpleNamespace(
        llm_engine=SimpleNamespace(vllm_config=SimpleNamespace(cache_config=cache)),
        generate=lambda prompts, params, use_tqdm: calls.append(("plain", len(prompts))) or [])
    eng.eos_ids, eng.decode_time = [EOS], "auto"
    eng._generate_abort = lambda prompts, params, s: calls.append(("abort", len(prompts))) or []
    s = SamplingConfig(n=2, max_tokens=38, repetition_window=5)
    assert eng.kv_cache_tokens() == 160
    eng.generate([[1, 2]], s)  # 2 samples x (2 + 38) = 80 tokens: fits
    eng.generate([[1, 2], [3, 4]], s)  # 160: just fits
    eng.generate([[1, 2], [3, 4, 5]], s)  # 162: a request waits -> abort
    eng.generate([[1, 2], [3, 4, 5]], replace(s, repetition_window=0))  # rule off: nothing to abort
    eng.decode_time = "off"
    eng.generate([[1, 2], [3, 4, 5]], s)  # an explicit choice is kept
    assert calls == [("plain", 1), ("plain", 2), ("abort", 2), ("plain", 2), ("plain", 2)]


def test_engine_is_built_from_its_section_and_the_run_setup(fake_vllm, tmp_path):
    import sys

    from rollout.base import EngineSetup
    from rollout.engines import VLLMEngineConfig
    from rollout.vllm_engine import VLLMEngine
    from rollout.vllm_repetition import RepetitionStopLogitsProcessor

    built = []
    sys.modules["vllm"].LLM = lambda **kw: built.append(kw) or SimpleNamespace()
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 5}))
    setup = EngineSetup(dtype="bfloat16", lm_head_fp32=True, seed=3, sleep_mode=True,
                        weight_transfer="nccl", context_len=300)
    eng = VLLMEngineConfig(gpu_memory_utilization=0.3, decode_time="processor").build(
        str(tmp_path), setup)
    assert isinstance(eng, VLLMEngine) and eng.decode_time == "processor" and eng.eos_ids == [5]
    assert built[0] == {"model": str(tmp_path), "dtype": "bfloat16", "gpu_memory_utilization": 0.3,
                        "enable_sleep_mode": True, "seed": 3,
                        "hf_overrides": {"head_dtype": "float32"}, "max_model_len": 300,
                        "logits_processors": [RepetitionStopLogitsProcessor],
                        "weight_transfer_config": {"backend": "nccl"}}
    # `decode_time: true` means abort here as in the recipe: no logits processor, V2 runner kept
    eng = VLLMEngine(str(tmp_path), VLLMEngineConfig(decode_time=True, max_model_len=64),
                     EngineSetup(lm_head_fp32=False))
    assert eng.decode_time == "abort" and "logits_processors" not in built[1]
    assert built[1]["max_model_len"] == 64 and "hf_overrides" not in built[1]
    assert "weight_transfer_config" not in built[1]


class _RecordingLLM:
    """vllm.LLM as the weight-transfer calls use it: every call recorded in order."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_engine_side_of_the_learner_initiated_transfers():
    from rollout.vllm_engine import VLLMEngine

    eng = object.__new__(VLLMEngine)
    eng.llm = _RecordingLLM()
    eng.init_weight_transfer("10.0.0.1", 4321, 2, 3)
    assert eng.llm.calls == [("init_weight_transfer_engine", ({"init_info": {
        "master_address": "10.0.0.1", "master_port": 4321, "rank_offset": 2, "world_size": 3}},),
        {})]
    eng.llm.calls.clear()
    info = {"names": ["w"], "dtype_names": ["bfloat16"], "shapes": [[2, 2]], "packed": True}
    eng.receive_weights(info)
    # the stale prefix cache (KV from the old weights) goes after the update
    assert eng.llm.calls == [("start_weight_update", (), {}),
                             ("update_weights", ({"update_info": info},), {}),
                             ("finish_weight_update", (), {}), ("reset_prefix_cache", (), {})]


def test_engine_options_and_sampling_filters_reach_vllm(fake_vllm, tmp_path):
    """tensor_parallel_size, enable_prefix_caching and max_num_seqs go to vLLM's constructor
    (unset ones are left to vLLM); top_p, top_k and min_p to SamplingParams, with the raw
    logprobs of the sampled token (logprobs=0, vLLM's default raw_logprobs mode)."""
    import sys

    from rollout.base import EngineSetup, SamplingConfig
    from rollout.engines import VLLMEngineConfig

    built = []
    sys.modules["vllm"].LLM = lambda **kw: built.append(kw) or SimpleNamespace()
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": [5, 6]}))
    opts = VLLMEngineConfig(tensor_parallel_size=2, enable_prefix_caching=True, max_num_seqs=64)
    eng = opts.build(str(tmp_path), EngineSetup(lm_head_fp32=False))
    assert built[0]["tensor_parallel_size"] == 2 and built[0]["enable_prefix_caching"] is True
    assert built[0]["max_num_seqs"] == 64
    VLLMEngineConfig().build(str(tmp_path), EngineSetup(lm_head_fp32=False))
    assert not {"tensor_parallel_size", "enable_prefix_caching", "max_num_seqs"} & set(built[1])
    sp = eng.sampling_params(SamplingConfig(n=4, temperature=1.0, top_p=0.95, top_k=20,
                                            min_p=0.05), seed=7)
    assert (sp.top_p, sp.top_k, sp.min_p, sp.logprobs, sp.seed) == (0.95, 20, 0.05, 0, 7)
    assert sp.stop_token_ids == [5, 6]
    # token ids and flat logprobs out; the rollout worker decodes the text once
    assert (sp.detokenize, sp.flat_logprobs) == (False, True)
    off = eng.sampling_params(SamplingConfig(), seed=None)
    assert (off.top_p, off.top_k, off.min_p) == (1.0, 0, 0.0)  # vLLM's "off" values
