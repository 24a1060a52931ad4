"""Win rates of two policies: the length-controlled figure against a hand-computed reference."""

import math

import numpy as np
import pytest

from workbench.dpo.win_rates import head_to_head, length_controlled_win_rate, outcomes, reward_hacking


def _table():
    """12 games: A is 10 tokens longer in 8 (wins 6 of them), 10 tokens shorter in 4 (wins 2)."""
    wins = [1, 1, 1, 1, 1, 1, 0, 0] + [1, 1, 0, 0]
    dlen = [10] * 8 + [-10] * 4
    return np.array(wins, float), np.array(dlen, float)


def test_length_controlled_win_rate_equals_the_hand_computed_reference():
    # With x = +-k the logistic fit reproduces each group's win rate: sigmoid(theta + phi k) = 3/4 and
    # sigmoid(theta - phi k) = 1/2, so theta = (logit 3/4 + logit 1/2) / 2 = ln(3) / 2 and the
    # LC win rate is sigmoid(ln(3) / 2) = sqrt(3) / (1 + sqrt(3)) = 0.6340, against a raw 8/12 = 0.667.
    wins, dlen = _table()
    assert length_controlled_win_rate(wins, dlen) == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-6)
    assert wins.mean() == pytest.approx(8 / 12)


def test_ties_count_half_and_no_length_difference_gives_the_raw_rate():
    assert outcomes(np.array([2.0, 1.0, 1.0]), np.array([1.0, 1.0, 3.0])).tolist() == [1.0, 0.5, 0.0]
    wins = np.array([1, 0.5, 0, 1, 1])
    assert length_controlled_win_rate(wins, np.zeros(5)) == pytest.approx(wins.mean(), abs=1e-9)


def test_a_policy_that_only_got_longer_is_not_better_length_controlled():
    # A is longer in 3 of 4 games and wins 4/5 of those, 1/5 of the others: raw 0.65, and
    # LC = sigmoid((logit 0.8 + logit 0.2) / 2) = 0.5 exactly.
    wins = np.array([1, 1, 1, 1, 0] * 3 + [1, 0, 0, 0, 0], float)
    dlen = np.array([20] * 15 + [-20] * 5, float)
    assert wins.mean() == pytest.approx(0.65)
    assert length_controlled_win_rate(wins, dlen) == pytest.approx(0.5, abs=1e-6)


def test_head_to_head_report_and_reward_hacking_flag():
    rows = [{"prompt_id": f"p{i}", "score_a": 1.0 + (i % 5 == 0) * -2, "score_b": 0.0,
             "tokens_a": 10, "tokens_b": 10} for i in range(40)]
    report = head_to_head(rows, samples=200)
    assert report.prompts == 40 and report.win_rate == pytest.approx(0.8)
    assert report.win_rate_ci[0] < 0.8 < report.win_rate_ci[1] and report.win_rate_ci[0] > 0.5
    assert report.lc_win_rate == pytest.approx(0.8, abs=1e-6)
    even = head_to_head([dict(r, score_a=float(i % 2), score_b=0.5) for i, r in enumerate(rows)], samples=200)
    assert reward_hacking(report, even) and not reward_hacking(report, report)
