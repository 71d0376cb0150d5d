"""Policy losses, registered by name.

Shapes: ``N`` responses, ``T`` tokens (padded). Every loss takes

    logprobs      [N, T]  learner, current parameters (carries the gradient)
    old_logprobs  [N, T]  learner, before this generation batch's updates (no gradient)
    advantages    [N] or [N, T]
    mask          [N, T]  1 for response tokens that count, 0 for padding / prompt

then its recipe parameters as keyword-only arguments without defaults (the defaults live once, in
the loss's section of rlhf/config.py, whose fields are exactly these parameters: tests check it),
and the learner's runtime inputs ``denom``, ``is_weight`` (:func:`behaviour_weight`, for samples
older than the learner) and ``ref_logprobs`` where the loss uses a reference model. It returns ``(loss, metrics)``: a scalar and a dict of 0-d tensors (no host
synchronisation: the learner reads them once per update). Each loss is one pure function
computing the per-token loss; :func:`agg_loss` turns it into a scalar.
:func:`bind_policy_loss` binds a recipe section's fields to its loss.

``agg="token-mean"``: sum over unmasked tokens of the batch / number of unmasked tokens.
``agg="seq-mean"``: mean over sequences of each sequence's token mean.
``denom`` overrides the divisor (tokens for token-mean, sequences for seq-mean) so that a
learner splitting a mini-batch into micro-batches and ranks can normalise over the whole
mini-batch (global token-mean) instead of per micro-batch.

Stale samples (``train.async_mode=one_step``: sampled by version n-1, trained at version n) use
the decoupled objective of AReaL (Fu et al. 2025, eq. 5) with a truncated weight (TIS, Yao et
al. 2025): the ratio ``r = pi / pi_old`` stays anchored at ``old_logprobs``, the learner's policy
at the start of the train step, so the clip (CISPO's weight clip, PPO's trust region) measures
only how far this step's K updates have moved; the behaviour policy that sampled the tokens
enters as a separate constant per-token weight ``w = min(pi_old / pi_rollout, C)``, computed
from ``rollout_logprobs``. ``r * w = pi / pi_rollout`` below the cap, so the estimate stays an
importance-sampled one for the policy that really sampled. Putting ``rollout_logprobs`` in place
of ``old_logprobs`` instead would clip on the whole previous update plus the engine's numerics
(bf16 engines) before this step's first update. Fresh samples get ``w = 1`` exactly: the
synchronous maths is unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal

import torch

Agg = Literal["token-mean", "seq-mean"]
LossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
RUNTIME_INPUTS = ("denom", "is_weight", "ref_logprobs")  # keyword inputs from the learner, not the recipe

_LOSSES: dict[str, LossFn] = {}


def register_policy_loss(name: str) -> Callable[[LossFn], LossFn]:
    def deco(fn: LossFn) -> LossFn:
        _LOSSES[name] = fn
        return fn

    return deco


def get_policy_loss(name: str) -> LossFn:
    """Look a loss up by name; an unknown name lists the valid ones."""
    if name not in _LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; valid: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[name]


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def loss_parameters(fn: LossFn) -> list[str]:
    """A loss's recipe parameters: its keyword-only parameters but the runtime inputs."""
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in RUNTIME_INPUTS]


def bind_policy_loss(section: Any) -> LossFn:
    """The loss that ``section.type`` names with the section's other fields as its parameters;
    the result takes ``(logprobs, old_logprobs, advantages, mask, *, denom, ...)``. A field the
    function does not take, or a parameter the section does not have, is an error."""
    fn = get_policy_loss(section.type)
    fields = sorted(name for name in type(section).model_fields if name != "type")
    if fields != sorted(loss_parameters(fn)):
        raise TypeError(f"loss {section.type!r}: the recipe section's fields {fields} are not the "
                        f"function's parameters {sorted(loss_parameters(fn))}")
    return functools.partial(fn, **{name: getattr(section, name) for name in fields})


def agg_loss(per_token: torch.Tensor, mask: torch.Tensor, agg: Agg = "token-mean",
             denom: float | None = None) -> torch.Tensor:
    """Aggregate a per-token loss ``[N, T]`` to a scalar (see module docstring)."""
    mask = mask.to(per_token.dtype)
    if agg == "token-mean":
        total = (per_token * mask).sum()
        return total / (denom if denom is not None else mask.sum().clamp_min(1.0))
    if agg == "seq-mean":
        seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)  # [N]
        return seq.sum() / (denom if denom is not None else max(per_token.shape[0], 1))
    raise ValueError(f"unknown agg {agg!r}; valid: token-mean, seq-mean")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over unmasked entries, 0 when none (no host synchronisation)."""
    m = mask.bool()
    top = torch.where(m, x, torch.full_like(x, -torch.inf)).max()
    return torch.where(m.any(), top, torch.zeros_like(top))


def behaviour_weight(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                     stale: torch.Tensor, cap: float) -> torch.Tensor:
    """The truncated importance weight of a stale sample's tokens (module docstring):
    ``min(exp(old - rollout), cap)`` on rows where ``stale`` [N] is true, 1 elsewhere; [N, T],
    no gradient. ``old_logprobs``: the learner's at the start of the step; ``rollout_logprobs``:
    the sampler's (the behaviour policy)."""
    w = torch.exp(old_logprobs.detach() - rollout_logprobs).clamp(max=cap)  # [N, T]
    return torch.where(stale.unsqueeze(-1).to(w.device), w, torch.ones_like(w))


def _weighted(per_token: torch.Tensor, is_weight: torch.Tensor | None) -> torch.Tensor:
    return per_token if is_weight is None else per_token * is_weight


def _broadcast_adv(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return advantages.unsqueeze(-1).expand_as(like) if advantages.dim() == 1 else advantages


def _ratio_metrics(ratio: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"ratio_mean": _masked_mean(ratio.detach(), mask),
            "ratio_max": _masked_max(ratio.detach(), mask)}


@register_policy_loss("cispo")
def cispo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
               mask: torch.Tensor, *, eps_low: float | None, eps_high: float, unified_mask: bool,
               agg: Agg, weight_cap: float | None, denom: float | None = None,
               is_weight: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CISPO, MiniMax-M1 eq. 4-5: clip the importance-sampling weight, not the update.

        J = (1 / sum_i |o_i|) sum_i sum_t sg(clip(r, 1 - eps_low, 1 + eps_high)) * w * A * log pi

    (``w = is_weight``, 1 for fresh samples.) Bounds: M1 writes them relative to 1
    (``1 + eps_high``); ``weight_cap`` states the upper bound as an absolute number instead
    (TRL's and ScaleRL's ``epsilon_high`` convention: their 5.0 is ``weight_cap: 5.0``, i.e.
    ``eps_high: 4.0`` here) and replaces ``1 + eps_high``.
    ``eps_low=None`` means no lower bound (M1's setting). With ``unified_mask`` (M1 eq. 7) a
    token gets weight 0 where (A > 0 and r > upper) or (A < 0 and r < 1 - eps_low), which
    recovers PPO's trust region. No KL term.
    """
    adv = _broadcast_adv(advantages, logprobs)  # [N, T]
    ratio = torch.exp(logprobs.detach() - old_logprobs)  # [N, T]
    lo = None if eps_low is None else 1.0 - eps_low
    hi = weight_cap if weight_cap is not None else 1.0 + eps_high
    weight = torch.clamp(ratio, min=lo, max=hi)  # sg(clip(r)) [N, T]
    above = ratio > hi
    below = ratio < lo if lo is not None else torch.zeros_like(above)
    keep = torch.ones_like(ratio)
    if unified_mask:
        keep = (~((adv > 0) & above | (adv < 0) & below)).to(ratio.dtype)
    per_token = _weighted(-weight * keep * adv * logprobs, is_weight)  # [N, T]
    metrics = {
        "clip_frac_upper": _masked_mean(above.float(), mask),
        "clip_frac_lower": _masked_mean(below.float(), mask),
        "unified_mask_frac": _masked_mean(1.0 - keep, mask),
        **_ratio_metrics(ratio, mask),
    }
    return agg_loss(per_token, mask, agg, denom), metrics


def _ppo_clip_per_token(logprobs: torch.Tensor, old_logprobs: torch.Tensor, adv: torch.Tensor,
                        eps_low: float, eps_high: float) -> tuple[torch.Tensor, dict, torch.Tensor]:
    ratio = torch.exp(logprobs - old_logprobs)  # [N, T]
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # [N, T]
    r = ratio.detach()
    flags = {"upper": (adv > 0) & (r > 1.0 + eps_high), "lower": (adv < 0) & (r < 1.0 - eps_low)}
    return per_token, flags, ratio


def _clip_metrics(flags: dict, ratio: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"clip_frac_upper": _masked_mean(flags["upper"].float(), mask),
            "clip_frac_lower": _masked_mean(flags["lower"].float(), mask),
            **_ratio_metrics(ratio, mask)}


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref), per token; non-negative, unbiased."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


@register_policy_loss("grpo")
def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, *, eps_low: float, eps_high: float, kl_coef: float, agg: Agg,
              denom: float | None = None, is_weight: torch.Tensor | None = None,
              ref_logprobs: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO (DeepSeekMath): PPO's clipped surrogate, per-sequence mean, optional k3 KL to a
    reference policy weighted by ``kl_coef`` (needs ``ref_logprobs``). ``is_weight`` weights
    the surrogate, not the KL penalty."""
    adv = _broadcast_adv(advantages, logprobs)
    per_token, flags, ratio = _ppo_clip_per_token(logprobs, old_logprobs, adv, eps_low, eps_high)
    per_token = _weighted(per_token, is_weight)
    metrics = _clip_metrics(flags, ratio, mask)
    if kl_coef > 0.0:
        if ref_logprobs is None:
            raise ValueError("grpo: kl_coef > 0 needs ref_logprobs")
        kl = kl_k3(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = _masked_mean(kl.detach(), mask)
    return agg_loss(per_token, mask, agg, denom), metrics


@register_policy_loss("ppo")
@register_policy_loss("dapo")
def ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
             mask: torch.Tensor, *, eps_low: float, eps_high: float, agg: Agg,
             denom: float | None = None, is_weight: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate objective (no value loss: advantages come from the groups),
    times ``is_weight`` (the decoupled objective for stale samples, module docstring).

    Registered as ``dapo`` too: DAPO (arXiv 2503.14476) is this objective with clip-higher
    bounds (0.2 / 0.28) and a token-level mean, no KL; only its recipe section's defaults
    differ (rlhf/config.py ``DapoLoss``)."""
    adv = _broadcast_adv(advantages, logprobs)
    per_token, flags, ratio = _ppo_clip_per_token(logprobs, old_logprobs, adv, eps_low, eps_high)
    return agg_loss(_weighted(per_token, is_weight), mask, agg, denom), _clip_metrics(flags, ratio, mask)
