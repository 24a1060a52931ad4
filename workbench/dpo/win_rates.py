"""Head-to-head statistics of two policies on the same prompts: win rate with a bootstrap CI, and a
length-controlled win rate.

Each prompt contributes one outcome: the mean over its samples of 1 (A's reply scored higher),
1/2 (tie) or 0. Confidence intervals are percentile bootstraps over prompts (prompts are the unit
that was sampled; a prompt's samples are not independent), with a fixed seed so a report is
reproducible.

Length-controlled win rate, AlpacaEval 2 style (Dubois et al., 2024): a logistic regression of
the outcome on the normalised length difference, `P(A wins) = sigmoid(theta + phi * tanh(dlen /
sd(dlen)))` with `dlen` = A's tokens minus B's, fitted by maximum likelihood (ties enter as 1/2,
i.e. soft labels); the LC win rate is the prediction at zero length difference, `sigmoid(theta)`.
A policy that only got longer wins more among the pairs where it is longer but not at dlen = 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class HeadToHead:
    """What the report says about A against B under one reward model."""

    prompts: int
    win_rate: float
    win_rate_ci: tuple[float, float]
    lc_win_rate: float
    lc_win_rate_ci: tuple[float, float]
    mean_reward_a: float
    mean_reward_b: float
    mean_reward_diff_ci: tuple[float, float]
    mean_tokens_a: float
    mean_tokens_b: float

    def as_dict(self) -> dict:
        return asdict(self)


def outcomes(score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
    """1 where A scored higher, 1/2 on a tie, 0 where B did."""
    return np.where(score_a > score_b, 1.0, np.where(score_a == score_b, 0.5, 0.0))


def length_controlled_win_rate(wins: np.ndarray, length_diff: np.ndarray, iterations: int = 50) -> float:
    """sigmoid(theta) of the logistic fit of `wins` (in [0, 1]) on tanh(dlen / sd(dlen)) (Newton's method).

    With no length difference at all the fit has no slope and the result is the plain win rate.
    """
    wins = np.asarray(wins, dtype=float)
    length_diff = np.asarray(length_diff, dtype=float)
    spread = length_diff.std()
    x = np.tanh(length_diff / spread) if spread > 0 else np.zeros_like(length_diff)
    design = np.column_stack([np.ones_like(x), x])  # (N, 2)
    # A little L2 on the slope keeps the fit finite when one side wins every game (separation).
    ridge = np.diag([0.0, 1e-6])
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (wins - p) - ridge @ theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    return float(1.0 / (1.0 + math.exp(-theta[0])))


def head_to_head(rows: list[dict], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> HeadToHead:
    """Statistics over rows of (prompt_id, score_a, score_b, tokens_a, tokens_b), one per sample."""
    if not rows:
        raise ValueError("no paired replies to compare")
    prompts = sorted({r["prompt_id"] for r in rows})
    index = {p: i for i, p in enumerate(prompts)}
    group = np.array([index[r["prompt_id"]] for r in rows])
    score_a = np.array([r["score_a"] for r in rows], dtype=float)
    score_b = np.array([r["score_b"] for r in rows], dtype=float)
    tokens_a = np.array([r["tokens_a"] for r in rows], dtype=float)
    tokens_b = np.array([r["tokens_b"] for r in rows], dtype=float)
    win = outcomes(score_a, score_b)
    per_prompt_win = np.bincount(group, weights=win) / np.bincount(group)
    per_prompt_diff = np.bincount(group, weights=score_a - score_b) / np.bincount(group)

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(prompts), size=(samples, len(prompts)))  # (S, P) prompts per resample
    members = [np.flatnonzero(group == g) for g in range(len(prompts))]
    lc = [length_controlled_win_rate(win[np.concatenate([members[g] for g in d])],
                                     (tokens_a - tokens_b)[np.concatenate([members[g] for g in d])])
          for d in draws]
    return HeadToHead(
        prompts=len(prompts),
        win_rate=float(per_prompt_win.mean()),
        win_rate_ci=_interval(per_prompt_win[draws].mean(axis=1)),
        lc_win_rate=length_controlled_win_rate(win, tokens_a - tokens_b),
        lc_win_rate_ci=_interval(np.array(lc)),
        mean_reward_a=float(score_a.mean()), mean_reward_b=float(score_b.mean()),
        mean_reward_diff_ci=_interval(per_prompt_diff[draws].mean(axis=1)),
        mean_tokens_a=float(tokens_a.mean()), mean_tokens_b=float(tokens_b.mean()),
    )


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def reward_hacking(training: HeadToHead, heldout: HeadToHead) -> bool:
    """A win under the training RM (CI above 1/2) that the held-out RM does not confirm (its CI reaches 1/2)."""
    return training.win_rate_ci[0] > 0.5 and heldout.win_rate_ci[0] <= 0.5
