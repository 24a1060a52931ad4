"""Reward-model losses on score tensors (the InternLM2 recipe), summed over pairs.

Scores come in the packing order chosen, rejected, chosen, rejected, ... With d = s_c - s_r:

- Bradley-Terry ranking:   L_bt = -log sigma(d)
- Focal ranking (InternLM2, difficulty decay): P = sigma(d),
      L_focal = (1 - 2 * max(0, P - 1/2))^gamma * (-log P),   gamma = 2 by default.
  Pairs the model already ranks confidently (P near 1) weigh little; pairs at or below
  P = 1/2 keep full weight.
- Penalty on every score s, keeping scores in a fixed range:
      log-barrier  L_pen(s) = -log(b - s) - log(b + s) = -log(b^2 - s^2),   b = 5 by default
      or L2        L_pen(s) = s^2.
- Total per pair = L_rank + lambda * (L_pen(s_c) + L_pen(s_r)) / 2,   lambda = 0.01.
  Halving the pair's penalty makes "total / number of pairs" equal to mean ranking loss plus
  lambda times the mean penalty over all scores.

Reduction is a SUM over pairs: the trainer divides by the number of pairs in the whole optimizer
step (all micro-batches and ranks), which makes gradient accumulation exactly invariant to how
a step is split.

The barrier is infinite at |s| = b and undefined beyond, yet a discrete optimizer step can jump
past it. So for |s| > t = b - 0.01 b the barrier is continued by its tangent at t: value and slope
stay continuous, the penalty stays finite and its gradient keeps pushing the score back
(slope 2t / (b^2 - t^2), about 20 for b = 5) instead of producing inf or NaN. Inside |s| <= t it
is the exact formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from engine.train_config import LossSettings

BARRIER_MARGIN = 0.01  # the tangent continuation starts at |s| = bound * (1 - BARRIER_MARGIN)


@dataclass
class RewardLoss:
    """Sums over the pairs of one micro-batch; divide by the step's total pair count."""

    total: torch.Tensor  # scalar: ranking + penalty_weight * penalty, the one to backpropagate
    ranking: torch.Tensor  # scalar, detached
    penalty: torch.Tensor  # scalar, detached, before the weight
    correct: torch.Tensor  # scalar, detached: pairs ranked right, ties counting half
    n_pairs: int


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair -log sigma(s_c - s_r)."""
    return -F.logsigmoid(chosen - rejected)


def focal_ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Per-pair (1 - 2 max(0, P - 1/2))^gamma * (-log P) with P = sigma(s_c - s_r)."""
    diff = chosen - rejected
    weight = (1 - 2 * (torch.sigmoid(diff) - 0.5).clamp(min=0)) ** gamma
    return weight * -F.logsigmoid(diff)


def log_barrier_penalty(scores: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    """Per-score -log(b - s) - log(b + s); beyond |s| = b(1 - 0.01) continued by its tangent (finite)."""
    s = scores.abs()
    t = bound * (1 - BARRIER_MARGIN)
    inside = -torch.log(bound**2 - s.clamp(max=t) ** 2)  # clamp: finite in both where() branches
    slope = 2 * t / (bound**2 - t**2)
    return torch.where(s <= t, inside, inside + slope * (s - t))


def l2_penalty(scores: torch.Tensor) -> torch.Tensor:
    """Per-score s^2."""
    return scores**2


def score_penalty(scores: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """Per-score penalty the settings name (before the weight lambda)."""
    if settings.penalty == "log_barrier":
        return log_barrier_penalty(scores, settings.barrier_bound)
    if settings.penalty == "l2":
        return l2_penalty(scores)
    return torch.zeros_like(scores)


def reward_loss(scores: torch.Tensor, settings: LossSettings | None = None) -> RewardLoss:
    """Loss of one micro-batch from its scores (S,) = (s_c0, s_r0, s_c1, s_r1, ...), summed over pairs."""
    settings = settings or LossSettings()
    if scores.ndim != 1 or scores.shape[0] % 2:
        raise ValueError(f"expected scores (2 * n_pairs,), got shape {tuple(scores.shape)}")
    scores = scores.float()  # the barrier's log is imprecise in bf16 near the bound
    chosen, rejected = scores[0::2], scores[1::2]  # (P,)
    if settings.ranking == "focal":
        ranking = focal_ranking_loss(chosen, rejected, settings.focal_gamma)
    else:
        ranking = bradley_terry_loss(chosen, rejected)
    per_score = score_penalty(scores, settings)
    penalty = (per_score[0::2] + per_score[1::2]) / 2  # (P,)
    total = ranking.sum() + settings.penalty_weight * penalty.sum()
    correct = (chosen > rejected).float().sum() + 0.5 * (chosen == rejected).float().sum()
    return RewardLoss(total, ranking.sum().detach(), penalty.sum().detach(), correct.detach(), int(chosen.shape[0]))
