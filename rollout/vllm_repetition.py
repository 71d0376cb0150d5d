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

Shapes (rollout/base.py): ``N`` rows of vLLM's persistent batch, ``V`` vocabulary.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:  # vLLM is only on GPU machines; the pure-Python parts are tested without it
    from vllm.v1.sample.logits_processor import LogitsProcessor as _Base
except ImportError:  # pragma: no cover - exercised on CPU CI
    _Base = object  # type: ignore[assignment,misc]

EXTRA_ARGS_KEY = "repetition_stop"


def repetition_args(window: int, prob: float, eos: int) -> dict:
    """The ``SamplingParams.extra_args`` entry that turns the rule on for one request."""
    return {EXTRA_ARGS_KEY: {"window": int(window), "prob": float(prob), "eos": int(eos)}}


def confident_run_rule(tokens: list[int], top_logprobs: list[float], argmaxes: list[int],
                       window: int, prob: float) -> int | None:
    """Plain-loop reference of the per-step rule: the index of the token after which EOS is
    forced (None if never). Equal to :func:`rollout.repetition.first_repetition_stop` on the
    sampled tokens' own logprobs whenever ``prob >= 0.5``."""
    log_prob, run = math.log(prob), 0
    for i, (tok, lp, am) in enumerate(zip(tokens, top_logprobs, argmaxes)):
        run = run + 1 if (lp > log_prob and tok == am) else 0
        if run >= window:
            return i
    return None


class RepetitionStopLogitsProcessor(_Base):  # type: ignore[misc,valid-type]
    """vLLM v1 logits processor: force EOS after ``window`` consecutive tokens with p > prob.

    Per-row state lives in numpy arrays indexed by the row of vLLM's persistent batch (moved
    with the row on batch updates), so one decode step costs a few vectorised operations and
    two passes over the active rows' logits, not a Python loop with tensor indexing per row.
    """

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
        self.on = np.zeros(n, dtype=bool)  # [max_num_seqs]: the rule applies to this row
        self.window = np.zeros(n, dtype=np.int64)
        self.log_prob = np.zeros(n, dtype=np.float64)
        self.eos = np.zeros(n, dtype=np.int64)
        self.run = np.zeros(n, dtype=np.int64)  # consecutive confident tokens so far
        self.pending = np.full(n, -1, dtype=np.int64)  # output length the last stats are for
        self.slot = np.zeros(n, dtype=np.int64)  # where in the pinned buffer they are
        self.forced = np.zeros(n, dtype=bool)
        self.out: list[list[int] | None] = [None] * n  # vLLM's live output-token lists
        # double-buffered statistics of the last step: top logprob and argmax
        self._top = [torch.zeros(n, dtype=torch.float32, pin_memory=is_pin_memory) for _ in range(2)]
        self._arg = [torch.zeros(n, dtype=torch.int64, pin_memory=is_pin_memory) for _ in range(2)]
        self._buf = 0
        self._event = torch.cuda.Event() if self.device.type == "cuda" else None

    def is_argmax_invariant(self) -> bool:
        return False  # forcing EOS changes the argmax

    def active_rows(self) -> set[int]:
        return {int(i) for i in np.flatnonzero(self.on)}

    # ---- batch bookkeeping -------------------------------------------------------------
    _FIELDS = ("on", "window", "log_prob", "eos", "run", "pending", "slot", "forced")

    def _clear(self, i: int) -> None:
        self.on[i], self.pending[i], self.out[i] = False, -1, None

    def _add(self, i: int, params, output_ids) -> None:
        args = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
        max_tokens = getattr(params, "max_tokens", None)
        if not args or int(args["window"]) <= 0 or (max_tokens is not None
                                                    and max_tokens < int(args["window"])):
            self._clear(i)  # off, or can never fire: the row costs nothing
            return
        self.on[i], self.window[i] = True, int(args["window"])
        self.log_prob[i], self.eos[i] = math.log(float(args["prob"])), int(args["eos"])
        self.run[i], self.pending[i], self.forced[i] = 0, -1, False
        self.out[i] = output_ids

    def _move(self, a: int, b: int, swap: bool) -> None:
        for name in self._FIELDS:
            arr = getattr(self, name)
            arr[a], arr[b] = (arr[b], arr[a]) if swap else (arr[a], arr[a])
        self.out[a], self.out[b] = (self.out[b], self.out[a]) if swap else (None, self.out[a])
        if not swap:
            self._clear(a)

    def update_state(self, batch_update) -> None:
        if not batch_update:
            return
        for i in batch_update.removed:  # order: removed, added, moved
            self._clear(i)
        for i, params, _prompt_ids, output_ids in batch_update.added:
            self._add(i, params, output_ids)
        for a, b, direction in batch_update.moved:
            self._move(a, b, getattr(direction, "name", str(direction)) == "SWAP")

    # ---- one decode step -----------------------------------------------------------------
    def _settle(self, rows: np.ndarray) -> np.ndarray:
        """Fold last step's statistics into the run counts; the rows that must stop now."""
        pend = rows[self.pending[rows] >= 0]
        if pend.size == 0:
            return pend
        if self._event is not None:
            self._event.synchronize()  # already done: vLLM waited for later work on the stream
        lens = np.fromiter((len(self.out[i]) for i in pend), np.int64, pend.size)
        got = pend[lens == self.pending[pend]]  # else the sample was discarded (partial prefill)
        self.pending[pend] = -1
        if got.size == 0:
            return got
        last = np.fromiter((self.out[i][-1] for i in got), np.int64, got.size)  # x_{t-1}
        s = self.slot[got]
        top = self._top[self._buf].numpy()[s].astype(np.float64)
        arg = self._arg[self._buf].numpy()[s]
        confident = (top > self.log_prob[got]) & (arg == last)
        self.run[got] = np.where(confident, self.run[got] + 1, 0)
        return got[(self.run[got] >= self.window[got]) & ~self.forced[got]]

    def apply(self, logits: torch.Tensor) -> torch.Tensor:  # [N, V] float32
        N = logits.shape[0]
        rows = np.flatnonzero(self.on[:N])
        if rows.size == 0:
            return logits
        force = self._settle(rows)
        if force.size:
            idx = torch.from_numpy(force).to(self.device, non_blocking=True)
            eos = torch.from_numpy(self.eos[force]).to(self.device, non_blocking=True)
            logits.index_fill_(0, idx, float("-inf"))
            logits[idx, eos] = 0.0
            self.forced[force] = True
        live = rows[~self.forced[rows]]  # rows still counting: statistics of this step
        if live.size == 0:
            return logits
        if live.size == N:  # every row: no gather
            sel = logits
        else:
            sel = logits.index_select(0, torch.from_numpy(live).to(self.device, non_blocking=True))
        top, arg = sel.max(dim=-1)  # [k]
        top_logprob = top - torch.logsumexp(sel, dim=-1)  # [k]
        self._buf ^= 1
        k = int(live.size)
        self._top[self._buf][:k].copy_(top_logprob, non_blocking=True)
        self._arg[self._buf][:k].copy_(arg, non_blocking=True)
        if self._event is not None:
            self._event.record()
        self.pending[live] = np.fromiter((len(self.out[i]) for i in live), np.int64, k) + 1
        self.slot[live] = np.arange(k)
        return logits
