"""M1's repetition early stop inside vLLM's decode loop (v1 logits-processor API).

M1 stops a generation once ``window`` consecutive sampled tokens each had probability > ``prob``
(3,000 tokens at 0.99). The stop has to happen at decode time to save the rollout time, but the
sampled token's probability is only known after sampling, and storing the logits is out of the
question. The trick: for ``prob >= 0.5`` at most one token can have probability > ``prob``, so

    p_t(x_t) > prob   <=>   max_v p_t(v) > prob  and  x_t == argmax_v p_t(v).

So at step t the processor keeps only two numbers per row, the top log-probability and the argmax
(computed from the same float32 logits that vLLM's raw logprobs come from, before temperature
and top-p), and at step t+1 compares the argmax with the token that was actually appended to the
request's output ids. After ``window`` consecutive confident tokens it forces EOS (every other
logit set to -inf). The engine wrapper (:mod:`rollout.vllm_engine`) then finds the stop from the
returned raw logprobs and reports finish reason ``repetition`` without the forced EOS.

Per-request switch: ``SamplingParams(extra_args={"repetition_stop": {"window": W, "prob": p,
"eos": EOS_ID}})``; requests without it, or whose ``max_tokens < window`` (the rule can never
fire), cost nothing. Register the class with ``vllm.LLM(logits_processors=[RepetitionStopLogitsProcessor])``.

No GPU->CPU synchronisation is added: the per-step statistics go to pinned memory with a
non-blocking copy and are read one step later, after vLLM itself has waited for the previous
step's sampled tokens (which were produced after the copy, on the same stream).

Shapes: ``B`` rows of vLLM's persistent batch, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

try:  # vLLM is only on GPU machines; the pure-Python parts are tested without it
    from vllm.v1.sample.logits_processor import LogitsProcessor as _Base
except ImportError:  # pragma: no cover - exercised on CPU CI
    _Base = object  # type: ignore[assignment,misc]

EXTRA_ARGS_KEY = "repetition_stop"


def repetition_args(window: int, prob: float, eos: int) -> dict:
    """The ``SamplingParams.extra_args`` entry that turns the rule on for one request."""
    return {EXTRA_ARGS_KEY: {"window": int(window), "prob": float(prob), "eos": int(eos)}}


@dataclass
class RowState:
    """One request's run of confident tokens, and the statistics of its last decode step."""

    window: int
    log_prob: float  # log of the threshold
    eos: int
    output_ids: list  # vLLM's running output-token list (a live reference)
    run: int = 0
    # statistics of the step that sampled token number ``pending_len`` (None: nothing pending)
    pending_len: int | None = None
    pending_slot: int | None = None  # row of the pinned buffer that holds them
    forced: bool = field(default=False)

    def observe(self, token: int, top_logprob: float, argmax: int) -> bool:
        """Fold in one sampled token; True once the run has reached ``window``."""
        confident = top_logprob > self.log_prob and token == argmax
        self.run = self.run + 1 if confident else 0
        return self.run >= self.window


def confident_run_rule(tokens: list[int], top_logprobs: list[float], argmaxes: list[int],
                       window: int, prob: float) -> int | None:
    """Plain-loop reference of the per-step rule: the index of the token after which EOS is
    forced (None if never). Equal to :func:`rollout.repetition.first_repetition_stop` on the
    sampled tokens' own logprobs whenever ``prob >= 0.5``."""
    state = RowState(window, math.log(prob), eos=-1, output_ids=[])
    for i, (tok, lp, am) in enumerate(zip(tokens, top_logprobs, argmaxes)):
        if state.observe(tok, lp, am):
            return i
    return None


class RepetitionStopLogitsProcessor(_Base):  # type: ignore[misc,valid-type]
    """vLLM v1 logits processor: force EOS after ``window`` consecutive tokens with p > prob."""

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        args = (getattr(sampling_params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
        if args is None:
            return
        if not 0.5 <= float(args["prob"]) < 1.0:
            raise ValueError("repetition_stop.prob must be in [0.5, 1): the decode-time rule "
                             f"relies on the confident token being the argmax; got {args['prob']}")
        if int(args["window"]) < 1:
            raise ValueError(f"repetition_stop.window must be >= 1, got {args['window']}")

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device = torch.device(device)
        n = int(vllm_config.scheduler_config.max_num_seqs)
        self.rows: dict[int, RowState] = {}
        # double-buffered [2, n] statistics: top logprob and argmax of the last step
        self._top = [torch.zeros(n, dtype=torch.float32, pin_memory=is_pin_memory) for _ in range(2)]
        self._arg = [torch.zeros(n, dtype=torch.int64, pin_memory=is_pin_memory) for _ in range(2)]
        self._buf = 0
        self._event = torch.cuda.Event() if self.device.type == "cuda" else None
        self.forced_total = 0

    def is_argmax_invariant(self) -> bool:
        return False  # forcing EOS changes the argmax

    @staticmethod
    def _new_row(params, _prompt_ids, output_ids) -> RowState | None:
        args = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
        if not args or int(args["window"]) <= 0:
            return None
        max_tokens = getattr(params, "max_tokens", None)
        if max_tokens is not None and max_tokens < int(args["window"]):
            return None  # can never fire: skip the row entirely
        return RowState(int(args["window"]), math.log(float(args["prob"])), int(args["eos"]),
                        output_ids)

    def update_state(self, batch_update) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:  # order: removed, added, moved
            self.rows.pop(index, None)
        for index, params, prompt_ids, output_ids in batch_update.added:
            state = self._new_row(params, prompt_ids, output_ids)
            if state is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = state
        for a, b, direction in batch_update.moved:
            sa, sb = self.rows.pop(a, None), self.rows.pop(b, None)
            if sa is not None:
                self.rows[b] = sa
            if sb is not None and getattr(direction, "name", str(direction)) == "SWAP":
                self.rows[a] = sb

    def _settle(self) -> list[int]:
        """Fold last step's statistics into each row; the rows that must stop now."""
        if self._event is not None:
            self._event.synchronize()  # already done: vLLM waited for later work on the stream
        top, arg = self._top[self._buf], self._arg[self._buf]
        force = []
        for index, st in self.rows.items():
            if st.pending_len is not None and len(st.output_ids) == st.pending_len:
                token = st.output_ids[-1]
                if token >= 0 and st.observe(token, float(top[st.pending_slot]),
                                             int(arg[st.pending_slot])):
                    force.append(index)
            st.pending_len = st.pending_slot = None
        return force

    def apply(self, logits: torch.Tensor) -> torch.Tensor:  # [B, V] float32
        if not self.rows:
            return logits
        force = self._settle()
        if force:
            idx = torch.tensor(force, dtype=torch.long).to(self.device, non_blocking=True)
            eos = torch.tensor([self.rows[i].eos for i in force], dtype=torch.long
                               ).to(self.device, non_blocking=True)
            logits.index_fill_(0, idx, float("-inf"))
            logits[idx, eos] = 0.0
            for i in force:
                self.rows[i].forced = True
            self.forced_total += len(force)
        # statistics of this step, for the rows still counting
        live = sorted(i for i, st in self.rows.items() if not st.forced and i < logits.shape[0])
        if not live:
            return logits
        if len(live) == logits.shape[0]:  # every row: no gather
            sel = logits
        else:
            rows_t = torch.tensor(live, dtype=torch.long).to(self.device, non_blocking=True)
            sel = logits.index_select(0, rows_t)  # [k, V]
        top, arg = sel.max(dim=-1)  # [k]
        top_logprob = top - torch.logsumexp(sel, dim=-1)  # [k]
        self._buf ^= 1
        k = len(live)
        self._top[self._buf][:k].copy_(top_logprob, non_blocking=True)
        self._arg[self._buf][:k].copy_(arg, non_blocking=True)
        if self._event is not None:
            self._event.record()
        for slot, i in enumerate(live):
            st = self.rows[i]
            st.pending_len, st.pending_slot = len(st.output_ids) + 1, slot
        return logits
