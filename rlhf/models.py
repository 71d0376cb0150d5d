"""Models and tokenizers without a hub.

``build_tiny_model`` writes a normal Hugging Face checkpoint directory (a small Qwen2 model and a
character-level tokenizer made in the run), which is what every other part of the toolkit loads
through ``model.path``. A real user passes any local checkpoint directory instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rlhf.config import ModelConfig

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<think>", "</think>", "\\boxed{"]


def build_char_tokenizer():
    """A byte-level tokenizer with no merges (one token per byte, like a BPE tokenizer before
    training) plus the special tokens above; ``<think>``, ``</think>`` and ``\\boxed{`` are
    single tokens. Byte-level, so that it survives being loaded as a Qwen2 tokenizer (which
    ``AutoTokenizer`` picks for a Qwen2 checkpoint) and encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS[:3])
    tok.add_tokens(SPECIAL_TOKENS[3:])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>",
                                   bos_token="<|bos|>", eos_token="<|eos|>")


def qwen2_config(vocab_size: int, hidden_size: int = 128, num_layers: int = 4,
                 num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int | None = None,
                 max_position_embeddings: int = 2048, tie_word_embeddings: bool = False,
                 **extra):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size or 3 * hidden_size,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=tie_word_embeddings,
        rope_theta=10000.0, **extra)  # type: ignore[call-arg]  # transformers 5 takes it into rope_parameters


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 128,
                     num_layers: int = 4, num_heads: int = 4, num_kv_heads: int = 2,
                     intermediate_size: int | None = None, max_position_embeddings: int = 2048,
                     tie_word_embeddings: bool = False, vocab_size: int | None = None) -> Path:
    """Write a random small Qwen2 model and the char tokenizer to ``out_dir``; return it."""
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_char_tokenizer()
    if vocab_size is not None and vocab_size < len(tok):
        raise ValueError(f"model.build.vocab_size={vocab_size} is smaller than the tokenizer's "
                         f"{len(tok)} tokens")
    cfg = qwen2_config(vocab_size or len(tok), hidden_size, num_layers, num_heads, num_kv_heads,
                       intermediate_size, max_position_embeddings, tie_word_embeddings,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "m1rl_build.json").write_text(json.dumps({"seed": seed, "builder": "tiny-qwen2"}))
    return out


def prepare_model(cfg: ModelConfig, build_dir: str | Path) -> str:
    """The checkpoint directory a run loads: ``model.path`` resolved, or the tiny model of
    ``model.build`` written to ``build_dir`` (once: an existing one is reused)."""
    if cfg.path is not None:
        return str(Path(cfg.path).resolve())
    assert cfg.build is not None  # the config allows exactly one of path and build
    out = Path(build_dir)
    if not (out / "config.json").exists():
        build_tiny_model(out, **cfg.build.model_dump())
    return str(out.resolve())
