"""Loss maths: closed-form values on hand-made tensors, gradients, fast path vs plain loop."""

import inspect
import math
import typing

import pytest
import torch

from rlhf.config import CispoLoss, DapoLoss, GrpoLoss, LossConfig, PpoLoss
from rlhf.learner.losses import (
    agg_loss,
    available_losses,
    bind_policy_loss,
    get_policy_loss,
    kl_k3,
    loss_parameters,
)

pytestmark = pytest.mark.unit
LN2 = math.log(2.0)


def _lp(*probs):
    return torch.tensor([[math.log(p) for p in probs]], dtype=torch.float64)


def test_registry_lists_valid_names_on_error():
    assert available_losses() == ["cispo", "dapo", "grpo", "ppo"]
    with pytest.raises(ValueError, match="valid: cispo, dapo, grpo, ppo"):
        get_policy_loss("reinforce++")


def test_loss_sections_are_the_registry_and_their_fields_the_parameters():
    sections = typing.get_args(typing.get_args(LossConfig)[0])  # Annotated[A | B | ..., Field]
    assert sorted(s.model_fields["type"].default for s in sections) == available_losses()
    for section in sections:
        fn = get_policy_loss(section.model_fields["type"].default)
        params = inspect.signature(fn).parameters
        assert set(section.model_fields) - {"type"} == set(loss_parameters(fn)), section
        # the defaults live in the section only, and no catch-all swallows a renamed field
        assert all(params[p].default is inspect.Parameter.empty for p in loss_parameters(fn))
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), section


def test_a_renamed_field_fails_loudly():
    class Renamed(CispoLoss):
        eps_hi: float = 5.0  # a field the loss function does not take

    with pytest.raises(TypeError, match=r"fields \['agg', 'eps_hi', 'eps_high'"):
        bind_policy_loss(Renamed())
    one = torch.zeros(1, 1)
    with pytest.raises(TypeError, match="eps_hgh"):
        bind_policy_loss(CispoLoss())(one, one, torch.zeros(1), one, eps_hgh=0.3)


def test_cispo_closed_form_value_and_gradient():
    # r = [2, 1]; eps_high 0.5 -> weight [1.5, 1]; A = 2
    logprobs = _lp(0.5, 0.25).requires_grad_(True)
    old = _lp(0.25, 0.25)
    adv = torch.tensor([2.0], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, m = bind_policy_loss(CispoLoss(eps_high=0.5))(logprobs, old, adv, mask)
    # -(1.5*2*ln0.5 + 1*2*ln0.25)/2 = (3 ln2 + 4 ln2)/2
    assert loss.item() == pytest.approx(3.5 * LN2, abs=1e-12)
    loss.backward()
    # no gradient through the clipped weight: d/dlogp = -sg(w) * A / num_tokens
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.5, -1.0]], dtype=torch.float64), atol=1e-12)
    assert m["clip_frac_upper"] == pytest.approx(0.5)
    assert m["clip_frac_lower"] == 0.0
    assert m["ratio_max"] == pytest.approx(2.0)
    assert m["ratio_mean"] == pytest.approx(1.5)


def test_cispo_weight_cap_is_the_absolute_bound_of_trl_and_scalerl():
    # r = [2, 1]; weight_cap 1.5 (absolute) is eps_high 0.5 (relative): weight [1.5, 1]
    logprobs = _lp(0.5, 0.25).requires_grad_(True)
    old, adv, mask = _lp(0.25, 0.25), torch.tensor([2.0], dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    loss, m = bind_policy_loss(CispoLoss(weight_cap=1.5))(logprobs, old, adv, mask)
    assert loss.item() == pytest.approx(3.5 * LN2, abs=1e-12) and m["clip_frac_upper"] == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.5, -1.0]], dtype=torch.float64), atol=1e-12)
    loss, m = bind_policy_loss(CispoLoss(weight_cap=2.5))(logprobs, old, adv, mask)  # above r: no clip
    assert m["clip_frac_upper"] == 0.0
    assert CispoLoss().eps_high == 5.0 and CispoLoss().weight_cap is None  # default cap: 1 + 5 = 6
    with pytest.raises(ValueError, match="give one upper bound: eps_high"):
        CispoLoss(eps_high=4.0, weight_cap=5.0)


def test_cispo_no_lower_bound_by_default_and_eps_low_clips():
    logprobs = _lp(0.1).requires_grad_(True)  # r = 0.1 / 0.5 = 0.2
    old = _lp(0.5)
    adv = torch.tensor([-1.0], dtype=torch.float64)
    mask = torch.ones(1, 1, dtype=torch.float64)
    loss, m = bind_policy_loss(CispoLoss())(logprobs, old, adv, mask)
    assert loss.item() == pytest.approx(0.2 * math.log(0.1), abs=1e-12)  # -(0.2 * -1 * ln 0.1)
    assert m["clip_frac_lower"] == 0.0
    loss2, m2 = bind_policy_loss(CispoLoss(eps_low=0.5))(logprobs, old, adv, mask)  # clipped up to 0.5
    assert loss2.item() == pytest.approx(0.5 * math.log(0.1), abs=1e-12)
    assert m2["clip_frac_lower"] == 1.0


def test_cispo_unified_mask_drops_trust_region_violations():
    logprobs = _lp(0.5, 0.25).requires_grad_(True)
    old = _lp(0.25, 0.25)
    adv = torch.tensor([2.0], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, m = bind_policy_loss(CispoLoss(eps_high=0.5, unified_mask=True))(logprobs, old, adv, mask)
    assert loss.item() == pytest.approx(2 * LN2, abs=1e-12)  # only the r=1 token: -(2 ln .25)/2
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[0.0, -1.0]], dtype=torch.float64))
    assert m["unified_mask_frac"] == pytest.approx(0.5)


def test_ppo_clip_closed_form_and_gradients():
    # token 1: r=2, A=+1 -> clipped at 1.2, no gradient; token 2: r=2, A=-1 -> -r*A, grad 2
    logprobs = _lp(0.5, 0.5).requires_grad_(True)
    old = _lp(0.25, 0.25)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, m = bind_policy_loss(PpoLoss())(logprobs, old, adv, mask)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2, abs=1e-12)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert m["clip_frac_upper"] == pytest.approx(0.5)


def test_dapo_defaults_are_clip_higher_token_mean():
    logprobs = _lp(0.6, 0.6, 0.6)  # r = 1.2 -> within 1.28: unclipped
    old = _lp(0.5, 0.5, 0.5)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    loss, m = bind_policy_loss(DapoLoss())(logprobs, old, torch.tensor([1.0], dtype=torch.float64), mask)
    assert loss.item() == pytest.approx(-1.2, abs=1e-12)
    assert m["clip_frac_upper"] == 0.0
    loss_ppo, _ = bind_policy_loss(PpoLoss())(_lp(0.65, 0.65, 0.65), old, torch.tensor([1.0], dtype=torch.float64), mask)
    assert loss_ppo.item() == pytest.approx(-1.2, abs=1e-12)  # ppo clips 1.3 -> 1.2


def test_grpo_seq_mean_and_k3_kl():
    logprobs = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.0 + 1e-300, 1e-300]], dtype=torch.float64))
    old = logprobs.clone()
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    adv = torch.tensor([1.0, 3.0], dtype=torch.float64)
    loss, _ = bind_policy_loss(GrpoLoss())(logprobs, old, adv, mask)
    assert loss.item() == pytest.approx(-(1.0 + 3.0) / 2, abs=1e-12)  # mean of per-seq means
    ref = logprobs + math.log(2.0)  # ref prob twice the policy's: k3 = 2 - ln2 - 1
    loss_kl, m = bind_policy_loss(GrpoLoss(kl_coef=0.1))(logprobs, old, adv, mask, ref_logprobs=ref)
    assert m["kl"] == pytest.approx(1 - LN2, abs=1e-12)
    assert loss_kl.item() == pytest.approx(-2.0 + 0.1 * (1 - LN2), abs=1e-12)
    assert kl_k3(torch.zeros(3), torch.zeros(3)).abs().max() == 0
    with pytest.raises(ValueError, match="ref_logprobs"):
        bind_policy_loss(GrpoLoss(kl_coef=0.1))(logprobs, old, adv, mask)


def test_agg_loss_modes_and_global_denominator():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert agg_loss(per_token, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert agg_loss(per_token, mask, "seq-mean").item() == pytest.approx((2 + 4) / 2)
    assert agg_loss(per_token, mask, "token-mean", denom=8).item() == pytest.approx(10 / 8)
    with pytest.raises(ValueError, match="token-mean, seq-mean"):
        agg_loss(per_token, mask, "sum")


def test_cispo_fast_path_matches_plain_loop():
    g = torch.Generator().manual_seed(0)
    N, T = 6, 9
    logprobs = (-torch.rand(N, T, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    old = logprobs.detach() + 0.4 * torch.randn(N, T, generator=g, dtype=torch.float64)
    adv = torch.randn(N, generator=g, dtype=torch.float64)
    mask = (torch.rand(N, T, generator=g) > 0.3).to(torch.float64)
    loss, _ = bind_policy_loss(CispoLoss(eps_low=0.2, eps_high=0.3, unified_mask=True))(
        logprobs, old, adv, mask)
    total, count = 0.0, 0
    for i in range(N):
        for t in range(T):
            if mask[i, t] == 0:
                continue
            r = math.exp(logprobs[i, t].item() - old[i, t].item())
            w = min(max(r, 0.8), 1.3)
            a = adv[i].item()
            keep = not ((a > 0 and r > 1.3) or (a < 0 and r < 0.8))
            total += -w * a * logprobs[i, t].item() * keep
            count += 1
    assert loss.item() == pytest.approx(total / count, abs=1e-12)
