"""The transformers engine: raw logprobs, seeds, budgets, finish reasons, repetition stop."""

import math
import random

import pytest
import torch

from rollout.base import EngineSetup, SamplingConfig
from rollout.engines import HFEngineConfig, engine_class, engine_sections
from rollout.hf_engine import HFEngine
from rollout.repetition import RepetitionTracker, first_repetition_stop

pytestmark = pytest.mark.unit


def test_repetition_rule_on_a_scripted_sequence():
    hi, lo = math.log(0.995), math.log(0.5)
    seq = [hi] * 4 + [lo] + [hi] * 6 + [lo]
    assert first_repetition_stop(seq, window=5, prob=0.99) == 9  # tokens 5..9 are the run
    assert first_repetition_stop(seq, window=7, prob=0.99) is None
    assert first_repetition_stop(seq, window=0, prob=0.99) is None
    tr = RepetitionTracker(1, window=5, prob=0.99)
    fired = [bool(tr.update(torch.tensor([x]))[0]) for x in seq]
    assert fired.index(True) == 9


def test_repetition_tracker_matches_loop_on_random_batches():
    rng = random.Random(0)
    seqs = [[math.log(rng.choice([0.999, 0.999, 0.999, 0.3])) for _ in range(60)] for _ in range(8)]
    tr = RepetitionTracker(8, window=6, prob=0.99)
    first = [None] * 8
    for t in range(60):
        hit = tr.update(torch.tensor([s[t] for s in seqs]))
        for b in range(8):
            if hit[b] and first[b] is None:
                first[b] = t
    assert first == [first_repetition_stop(s, 6, 0.99) for s in seqs]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine(tiny_model_dir)


def test_logprobs_are_the_raw_teacher_forced_ones(engine):
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
    outs = engine.generate(prompts, SamplingConfig(n=3, temperature=1.5, top_p=0.9, max_tokens=12, seed=0))
    assert [c.prompt_index for c in outs] == [0, 0, 0, 1, 1, 1]
    for c in outs:
        full = torch.tensor([prompts[c.prompt_index] + c.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(engine.model(full).logits[0].float(), -1)
        P = len(prompts[c.prompt_index])
        ref = [logp[P - 1 + k, t].item() for k, t in enumerate(c.token_ids)]
        assert max(abs(a - b) for a, b in zip(ref, c.logprobs)) < 1e-4


def test_per_prompt_seeds_make_samples_independent_of_batching(engine, tiny_model_dir):
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13], [20, 21]]
    s = SamplingConfig(n=2, max_tokens=10)
    together = engine.generate(prompts, s, seeds=[11, 22, 33])
    alone = engine.generate([prompts[1]], s, seeds=[22])
    assert [c.token_ids for c in together[2:4]] == [c.token_ids for c in alone]
    other = engine.generate([prompts[1]], s, seeds=[23])
    assert [c.token_ids for c in other] != [c.token_ids for c in alone]
    small = HFEngineConfig(max_batch_rows=4).build(tiny_model_dir, EngineSetup())  # its section
    assert small.max_batch_rows == 4
    split = small.generate(prompts, s, seeds=[11, 22, 33])  # 6 rows decoded as 4 + 2
    assert [c.token_ids for c in split] == [c.token_ids for c in together]


@pytest.mark.parametrize("budget", [3, 5])
def test_token_budget_gives_length_finish(engine, budget):
    outs = engine.generate([[5, 6], [7, 8]], SamplingConfig(n=1, max_tokens=budget, seed=1,
                                                            stop_token_ids=()))
    assert [c.prompt_index for c in outs] == [0, 1]
    for c in outs:
        assert len(c.token_ids) <= budget and c.finish_reason in ("length", "stop")
        if c.finish_reason == "length":
            assert len(c.token_ids) == budget


def test_repetition_stop_fires_on_a_degenerate_model(tiny_model_dir):
    eng = HFEngine(tiny_model_dir)
    sd = {k: v.clone() for k, v in eng.model.state_dict().items()}
    sd["model.embed_tokens.weight"].fill_(1.0)  # every position's residual is the same vector
    for k in sd:
        if k.endswith("o_proj.weight") or k.endswith("down_proj.weight"):
            sd[k].zero_()
    target = 42
    sd["lm_head.weight"].zero_()
    sd["lm_head.weight"][target] = 1.0  # logit of `target` = hidden size; others 0
    eng.update_weights(sd)
    outs = eng.generate([[5, 6, 7]], SamplingConfig(n=2, max_tokens=40, seed=0,
                                                   repetition_window=7, repetition_prob=0.99))
    for c in outs:
        assert c.finish_reason == "repetition"
        assert c.token_ids == [target] * 7
        assert all(lp > math.log(0.99) for lp in c.logprobs)
    off = eng.generate([[5, 6, 7]], SamplingConfig(n=1, max_tokens=12, seed=0, repetition_window=0))
    assert off[0].finish_reason == "length" and len(off[0].token_ids) == 12


def test_every_engine_section_names_an_engine_of_the_protocol():
    """A new engine = its module + its section in rollout/engines.py; this holds them together."""
    import inspect

    from rollout.base import Engine

    assert {s.model_fields["type"].default for s in engine_sections()} == {"hf", "vllm"}
    for section in engine_sections():
        cls = engine_class(section())  # importing the module needs no vLLM
        assert list(inspect.signature(cls).parameters)[:3] == ["model_path", "options", "setup"]
        for method in ("generate", "update_weights", "init_weight_transfer", "receive_weights",
                       "sleep", "wake_up"):
            assert inspect.signature(getattr(cls, method)).parameters.keys() == \
                inspect.signature(getattr(Engine, method)).parameters.keys(), (cls, method)
        assert "object_store" in section.weight_transports <= {"object_store", "ipc", "nccl"}


def test_update_weights_rejects_unknown_names(engine):
    with pytest.raises(KeyError, match="unknown parameter"):
        engine.update_weights({"not.a.param": torch.zeros(1)})


def test_learner_initiated_transfers_are_refused_with_the_reason(engine):
    with pytest.raises(NotImplementedError, match="need the vllm engine"):
        engine.init_weight_transfer("127.0.0.1", 4321, 1, 2)
    with pytest.raises(NotImplementedError, match="need the vllm engine"):
        engine.receive_weights({"names": []})


def test_vllm_engine_posthoc_repetition_truncation():
    from rollout.vllm_engine import truncate_repetition

    hi, lo = math.log(0.999), math.log(0.2)
    ids, lps = list(range(10)), [lo, lo] + [hi] * 8
    assert truncate_repetition(ids, lps, "length", 5, 0.99) == (ids[:7], lps[:7], "repetition")
    assert truncate_repetition(ids, lps, "stop", 9, 0.99) == (ids, lps, "stop")
    assert truncate_repetition(ids, lps, "stop", 0, 0.99) == (ids, lps, "stop")


def test_streaming_rule_matches_the_whole_sequence_rule_in_any_chunking():
    from rollout.repetition import StreamingRepetition

    rnd = random.Random(0)
    for trial in range(200):
        seq = [math.log(0.999) if rnd.random() < 0.8 else math.log(0.3) for _ in range(60)]
        window = 1 + trial % 9
        watch, pos, fired = StreamingRepetition(window, 0.99), 0, 0
        while pos < len(seq):
            k = rnd.randint(1, 5)
            fired += watch.feed(seq[pos:pos + k])
            pos += k
        assert watch.stop == first_repetition_stop(seq, window, 0.99)
        assert fired == (watch.stop is not None)


def test_min_p_top_k_top_p_filters_in_vllms_order():
    from rollout.hf_engine import _filter_top

    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = probs.log()
    kept = lambda **kw: torch.isfinite(_filter_top(logits, SamplingConfig(**kw)))[0].tolist()  # noqa: E731
    assert kept(min_p=0.3) == [True, True, True, False, False]  # p >= 0.3 x 0.5
    assert kept(top_k=2) == [True, True, False, False, False]
    assert kept(top_p=0.8) == [True, True, True, False, False]  # 0.5 + 0.2 < 0.8: one more
    assert kept(min_p=0.3, top_k=4, top_p=0.6) == [True, True, False, False, False]
    assert kept(min_p=0.99, top_k=1, top_p=0.01) == [True, False, False, False, False]
    assert kept() == [True] * 5


@pytest.mark.parametrize("filters", [dict(top_k=3), dict(min_p=0.2), dict(top_k=8, top_p=0.7, min_p=0.05)],
                         ids=["top_k", "min_p", "all"])
def test_filtered_sampling_returns_raw_logprobs_of_kept_tokens(engine, filters):
    """Samples come from the filtered distribution, but their logprobs are the raw model's
    (what the learner's old_logprobs are compared with)."""
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13]]
    outs = engine.generate(prompts, SamplingConfig(n=4, temperature=0.8, max_tokens=10, seed=1,
                                                   repetition_window=0, **filters))
    for c in outs:
        full = torch.tensor([prompts[c.prompt_index] + c.token_ids])
        with torch.no_grad():
            logits = engine.model(full).logits[0].float()
        P = len(prompts[c.prompt_index])
        raw = torch.log_softmax(logits, -1)
        for k, t in enumerate(c.token_ids):
            assert abs(raw[P - 1 + k, t].item() - c.logprobs[k]) < 1e-4
            scaled = logits[P - 1 + k] / 0.8
            probs = torch.softmax(scaled, -1)
            if "top_k" in filters:
                assert int((scaled > scaled[t]).sum()) < filters["top_k"]  # among the k best
            if "min_p" in filters:
                assert probs[t] >= filters["min_p"] * probs.max() - 1e-6
