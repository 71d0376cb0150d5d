"""The learner's view of a causal LM: response-token log-probabilities through an FP32,
chunked LM head.

``PolicyModel`` wraps a Hugging Face causal LM (optionally a peft model). Its ``forward`` runs
the decoder, picks the hidden states that predict response tokens, and applies the head with
:func:`rlhf.learner.logprobs.chunked_logprobs`; the head's weight is used inside this module's forward,
so FSDP2 (which unshards a module's parameters for its forward) can wrap it as the root.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlhf.learner.attention import NAME as PACKED
from rlhf.learner.batching import MicroBatch, PackedBatch
from rlhf.learner.logprobs import chunked_logprobs


def compile_layers(layers) -> None:
    """``torch.compile`` the norms and the MLP of every decoder layer (``train.compile``):
    regional compilation, one graph shared by all layers (same code, the weights are inputs),
    shapes dynamic (packed rows vary in length). Attention, FSDP's hooks and checkpointing stay
    outside the compiled regions."""
    for layer in layers:
        for name in ("input_layernorm", "post_attention_layernorm", "mlp"):
            module = getattr(layer, name, None)
            if isinstance(module, nn.Module):
                module.compile(dynamic=True)


def base_model(lm: nn.Module) -> Any:
    """The transformers model under a peft wrapper (or ``lm`` itself), as a transformers model
    (``.model``, ``.get_output_embeddings()``: attributes torch's ``Module`` type does not know)."""
    unwrap = getattr(lm, "get_base_model", None)
    return unwrap() if callable(unwrap) else lm


class PolicyModel(nn.Module):
    def __init__(self, lm: nn.Module, *, lm_head_fp32: bool = True, chunk_size: int = 1024):
        super().__init__()
        self.lm = lm
        self.lm_head_fp32 = lm_head_fp32
        self.chunk_size = chunk_size

    def forward(self, input_ids: torch.Tensor | PackedBatch, attention_mask: torch.Tensor | None = None,
                prompt_lens: torch.Tensor | None = None, resp_lens: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logprobs [N, T], entropy [N, T]) of the response tokens, zero-padded (input_ids,
        attention_mask [N, T_seq]; prompt_lens, resp_lens [N]), or of a :class:`PackedBatch`
        already on the device. (One ``forward`` for both, so that FSDP2's hooks run.)"""
        if isinstance(input_ids, PackedBatch):
            return self._packed(input_ids)
        assert attention_mask is not None and prompt_lens is not None and resp_lens is not None
        base = base_model(self.lm)
        # no padding: let attention use its causal kernel, no mask
        attn = None if bool(attention_mask.all()) else attention_mask
        hidden = base.model(input_ids=input_ids, attention_mask=attn,
                            use_cache=False).last_hidden_state  # [N, T_seq, H]
        N, T_seq, H = hidden.shape
        T = max(int(resp_lens.max()), 1)
        # hidden at position p predicts token p + 1: response token k of row i sits at
        # prompt_len + k and is predicted from prompt_len + k - 1.
        k = torch.arange(T, device=input_ids.device)  # [T]
        valid = k[None, :] < resp_lens[:, None].to(k.device)  # [N, T]
        pos = (prompt_lens[:, None].to(k.device) - 1 + k[None, :]).clamp(max=T_seq - 2)  # [N, T]
        rows = torch.arange(N, device=k.device)[:, None].expand(N, T)
        flat_h = hidden[rows[valid], pos[valid]]  # [T_sel, H]: the response tokens of all rows
        targets = input_ids[rows[valid], pos[valid] + 1]  # [T_sel]
        return self._head_values(flat_h, targets, valid)

    def _packed(self, pb: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The same values from a packed row (rlhf/learner/batching.py): the decoder runs on
        the sequences back to back, attention kept inside each by their boundaries."""
        base = base_model(self.lm)
        if base.config._attn_implementation != PACKED:
            raise RuntimeError("a packed batch needs the packed attention: call "
                               "rlhf.learner.attention.use_packed_attention(lm) first")
        hidden = base.model(input_ids=pb.input_ids, position_ids=pb.position_ids, use_cache=False,
                            cu_seq_lens_q=pb.cu_seqlens, cu_seq_lens_k=pb.cu_seqlens,
                            max_length_q=pb.max_len, max_length_k=pb.max_len,
                            ).last_hidden_state[0]  # [P, H]
        return self._head_values(hidden[pb.select], pb.input_ids[0, pb.select + 1], pb.valid)

    def _head_values(self, flat_h: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """LM head on the selected hidden states [T_sel, H] -> logprobs, entropy [N, T]."""
        head = base_model(self.lm).get_output_embeddings()
        if self.lm_head_fp32:
            lp, ent = chunked_logprobs(flat_h, head.weight, targets, head.bias, self.chunk_size)
        else:  # head in the model's dtype, log-softmax in float32
            logits = head(flat_h)  # [T_sel, V]
            logp = torch.log_softmax(logits.float(), -1)
            lp = logp.gather(-1, targets[:, None])[:, 0]
            ent = -(logp.exp() * logp).sum(-1).detach()
        logprobs = flat_h.new_zeros(valid.shape, dtype=torch.float32).masked_scatter(valid, lp)
        entropy = flat_h.new_zeros(valid.shape, dtype=torch.float32).masked_scatter(valid, ent)
        return logprobs, entropy

    def micro_forward(self, mb: MicroBatch | PackedBatch, device: torch.device):
        if isinstance(mb, PackedBatch):
            return self(mb.to(device))
        return self(mb.input_ids.to(device), mb.attention_mask.to(device),
                    mb.prompt_lens.to(device), mb.resp_lens.to(device))
