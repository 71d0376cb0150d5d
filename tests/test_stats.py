"""M1's mismatch statistics (one function for the learner's per-step metrics and `rlhf
mismatch`) and how the learner group combines its ranks' metrics."""

import math

import pytest
import torch

from rlhf.driver.roles import _reduce_metrics
from rlhf.learner.stats import mismatch_stats

pytestmark = pytest.mark.unit


def test_mismatch_stats_closed_form():
    learner = torch.log(torch.tensor([0.5, 0.25, 0.5]))
    sampler = torch.log(torch.tensor([0.25, 0.25, 0.5]))
    m = mismatch_stats(learner, sampler)
    assert m["tokens"] == 3 and m["sampled_prob_mean"] == pytest.approx(1 / 3)
    assert m["prob_abs_diff"] == pytest.approx(0.25 / 3) and m["prob_abs_diff_max"] == pytest.approx(0.25)
    assert m["logprob_abs_diff"] == pytest.approx(math.log(2) / 3)
    # probabilities x = [.5, .25, .5], y = [.25, .25, .5]: r = cov / (sd_x sd_y)
    x, y = torch.tensor([0.5, 0.25, 0.5]), torch.tensor([0.25, 0.25, 0.5])
    cx, cy = x - x.mean(), y - y.mean()
    assert m["pearson"] == pytest.approx(float((cx * cy).sum() / (cx.norm() * cy.norm())))
    same = mismatch_stats(learner, learner)
    assert same["pearson"] == pytest.approx(1.0) and same["prob_abs_diff_max"] == 0.0
    assert math.isnan(mismatch_stats(learner, torch.full((3,), -1.0))["pearson"])  # constant side


def test_rank_metrics_sum_losses_and_counts_max_maxima_average_the_rest():
    ranks = [{"loss": 0.5, "mismatch/tokens": 10, "mismatch/prob_abs_diff_max": 0.1, "entropy": 1.0},
             {"loss": 0.25, "mismatch/tokens": 6, "mismatch/prob_abs_diff_max": 0.3, "entropy": 3.0}]
    assert _reduce_metrics(ranks) == {"loss": 0.75, "mismatch/tokens": 16,
                                      "mismatch/prob_abs_diff_max": 0.3, "entropy": 2.0}
