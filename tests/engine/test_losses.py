"""Losses against values computed by hand with `math`, and the barrier's behaviour at its bound."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import EngineError
from engine.losses import (BARRIER_MARGIN, LossSettings, bradley_terry_loss, focal_ranking_loss, l2_penalty,
                           log_barrier_penalty, reward_loss)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_bradley_terry_by_hand():
    loss = bradley_terry_loss(t(1.0, 0.0), t(0.0, 2.0))
    assert loss.tolist() == pytest.approx([-math.log(sigmoid(1.0)), -math.log(sigmoid(-2.0))])


def test_focal_by_hand():
    p = sigmoid(1.0)  # s_c = 1, s_r = 0
    expected = (1 - 2 * (p - 0.5)) ** 2 * -math.log(p)
    assert focal_ranking_loss(t(1.0), t(0.0)).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.090632, abs=1e-6)  # (2 - 2 * 0.731059)^2 * 0.313262
    # a wrongly ranked pair keeps full weight: focal == Bradley-Terry
    assert focal_ranking_loss(t(0.0), t(1.0)).item() == pytest.approx(-math.log(sigmoid(-1.0)))
    # gamma = 3
    assert focal_ranking_loss(t(2.0), t(0.5), gamma=3.0).item() == pytest.approx(
        (2 - 2 * sigmoid(1.5)) ** 3 * -math.log(sigmoid(1.5)))
    # gamma = 0 is Bradley-Terry
    c, r = t(0.3, -1.0, 2.0), t(0.1, 0.5, -2.0)
    torch.testing.assert_close(focal_ranking_loss(c, r, gamma=0.0), bradley_terry_loss(c, r))


def test_log_barrier_by_hand_inside_the_bound():
    s = t(0.0, 3.0, -3.0, 4.5)
    values = log_barrier_penalty(s, bound=5.0)
    assert values.tolist() == pytest.approx([
        -2 * math.log(5), -math.log(2) - math.log(8), -math.log(8) - math.log(2), -math.log(0.5) - math.log(9.5)])
    (grad,) = torch.autograd.grad(values.sum(), s)
    assert grad.tolist() == pytest.approx([0.0, 6 / 16, -6 / 16, 9 / (25 - 20.25)])  # d/ds = 2s / (b^2 - s^2)


def test_log_barrier_at_and_beyond_the_bound_is_finite_and_pushes_back():
    b = 5.0
    edge = b * (1 - BARRIER_MARGIN)  # 4.95: where the tangent continuation starts
    slope = 2 * edge / (b**2 - edge**2)
    s = t(edge, 5.0, 6.0, 100.0, -6.0)
    values = log_barrier_penalty(s, bound=b)
    (grad,) = torch.autograd.grad(values.sum(), s)
    at_edge = -math.log(b - edge) - math.log(b + edge)
    assert values.tolist() == pytest.approx([at_edge, at_edge + slope * 0.05, at_edge + slope * 1.05,
                                             at_edge + slope * 95.05, at_edge + slope * 1.05])
    assert grad.tolist() == pytest.approx([slope, slope, slope, slope, -slope])  # always back toward 0
    assert slope == pytest.approx(19.9, abs=0.1)
    # continuous across the junction
    just_in, just_out = log_barrier_penalty(t(edge - 1e-6, edge + 1e-6), bound=b).tolist()
    assert just_out - just_in == pytest.approx(2e-6 * slope, rel=1e-3)
    # bf16 scores never give inf or NaN either
    assert torch.isfinite(log_barrier_penalty(torch.tensor([4.99, 5.0, 7.0], dtype=torch.bfloat16))).all()


def test_l2_penalty():
    assert l2_penalty(t(-2.0, 0.5)).tolist() == [4.0, 0.25]


def test_reward_loss_combines_parts_and_sums_over_pairs():
    scores = t(1.0, 0.0, -0.5, 0.5)  # pairs (1, 0) and (-0.5, 0.5)
    out = reward_loss(scores, LossSettings(ranking="bradley_terry", penalty="l2", penalty_weight=0.1))
    ranking = -math.log(sigmoid(1.0)) - math.log(sigmoid(-1.0))
    penalty = (1.0 + 0.0) / 2 + (0.25 + 0.25) / 2  # each pair: mean of its two scores' penalties
    assert out.ranking.item() == pytest.approx(ranking)
    assert out.penalty.item() == pytest.approx(penalty)
    assert out.total.item() == pytest.approx(ranking + 0.1 * penalty)
    assert (out.correct.item(), out.n_pairs) == (1.0, 2)
    # sum reduction: a batch's loss is the sum of its parts' losses (exact accumulation invariance)
    halves = [reward_loss(scores[:2]), reward_loss(scores[2:])]
    assert reward_loss(scores).total.item() == pytest.approx(sum(h.total.item() for h in halves))


def test_default_is_focal_with_barrier_and_ties_count_half():
    out = reward_loss(t(1.0, 0.0, 2.0, 2.0))
    p = sigmoid(1.0)
    focal = (2 - 2 * p) ** 2 * -math.log(p) + -math.log(0.5)
    barrier = (-2 * math.log(5) + (-math.log(24))) / 2 + (-math.log(21))
    assert out.total.item() == pytest.approx(focal + 0.01 * barrier)
    assert out.correct.item() == 1.5


def test_bad_settings_and_shapes():
    with pytest.raises(EngineError, match="ranking"):
        LossSettings(ranking="hinge")
    with pytest.raises(EngineError, match="penalty"):
        LossSettings(penalty="l1")
    with pytest.raises(ValueError, match="2 \\* n_pairs"):
        reward_loss(torch.zeros(3))
