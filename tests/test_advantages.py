import math

import pytest
import torch

from rlhf.learner.advantages import group_advantages, informative_groups, overlong_penalty

pytestmark = pytest.mark.unit


def test_group_normalised_advantages_closed_form():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    adv = group_advantages(rewards, 4, eps=0.0)
    s = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1]
    expected = torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0, 0, 0, 0])
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.allclose(group_advantages(rewards, 4, normalize_std=False),
                          torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="multiple of G=3"):
        group_advantages(rewards, 3)


def test_dynamic_sampling_drops_constant_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    assert informative_groups(rewards, 2).tolist() == [True, False, False]


def test_soft_overlong_penalty():
    lengths = torch.tensor([5, 6, 8, 10, 11])
    pen = overlong_penalty(lengths, max_len=10, cache_len=4)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])
    with pytest.raises(ValueError):
        overlong_penalty(lengths, 10, 0)
