"""Batched packed scoring against one-at-a-time scoring, and pair evaluation."""

from __future__ import annotations

import pytest

from engine.data import PreferencePair, ScoringItem
from engine.errors import EngineError
from engine.evaluation import evaluate_pairs, pairwise_accuracy
from engine.reward_model import RewardModel
from engine.scoring import Scorer, score_one_by_one
from tests.engine.helpers import sharpen_value_head


@pytest.fixture
def items():
    return [ScoringItem([{"role": "user", "content": "question " * (n % 7 + 1)}], "answer " * (3 * n % 11 + 1))
            for n in range(12)]


def test_scorer_matches_one_by_one_in_input_order(tiny_dir, items):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    calls = []
    scorer = Scorer(rm, max_length=256)
    scores = scorer.score(items, max_tokens_per_batch=256, progress=lambda done, total: calls.append((done, total)))
    expected = score_one_by_one(rm, items, max_length=256)
    assert scores == pytest.approx(expected, abs=1e-4)
    assert len(set(round(s, 3) for s in scores)) > 6  # distinct scores, so an order mix-up would show
    assert len(calls) > 1 and calls[-1] == (12, 12)  # several packed rows, progress reaches the end


def test_scorer_bf16_autocast_stays_close(tiny_dir, items):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    fp32 = Scorer(rm, max_length=256).score(items)
    bf16 = Scorer(rm, max_length=256, precision="bf16").score(items)
    assert bf16 == pytest.approx(fp32, abs=0.1)
    assert bf16 != fp32  # autocast really ran in bf16


def test_scorer_refuses_a_budget_below_max_length(tiny_dir, items):
    with pytest.raises(EngineError, match="max_tokens_per_batch"):
        Scorer(RewardModel.from_base(tiny_dir), max_length=512).score(items, max_tokens_per_batch=100)


class FixedScorer:
    """Scores by a lookup on the reply text, so evaluation numbers can be computed by hand."""

    def __init__(self, table):
        self.table = table

    def score(self, items, progress=None):
        return [self.table[item.response] for item in items]


def test_evaluate_pairs_by_hand():
    prompt = [{"role": "user", "content": "q"}]
    pairs = [PreferencePair(prompt, "aaaa", "b"), PreferencePair(prompt, "c", "dddd"),
             PreferencePair(prompt, "ee", "ff"), PreferencePair(prompt, "g", "hh")]
    table = {"aaaa": 2.0, "b": 1.0, "c": 0.0, "dddd": 1.0, "ee": 3.0, "ff": 3.0, "g": 1.0, "hh": -1.0}
    result = evaluate_pairs(FixedScorer(table), pairs)
    assert result["n"] == 4
    assert result["accuracy"] == (1 + 0 + 0.5 + 1) / 4  # the tie counts half
    assert result["mean_margin"] == (1 - 1 + 0 + 2) / 4
    assert result["length_baseline"] == (1 + 0 + 0.5 + 0) / 4  # longer reply (characters) wins
    assert result["shorter_baseline"] == (0 + 1 + 0.5 + 1) / 4
    assert result["chosen_scores"] == [2.0, 0.0, 3.0, 1.0]


def test_pairwise_accuracy_checks_its_input():
    assert pairwise_accuracy([1, 2], [0, 2]) == 0.75
    with pytest.raises(EngineError):
        pairwise_accuracy([], [])


def _bon_items(n_prompts: int = 4, n: int = 5) -> list[ScoringItem]:
    items = []
    for p in range(n_prompts):
        prompt = [{"role": "system", "content": "Be kind."},
                  {"role": "user", "content": f"Prompt {p}: " + "tell me about the weather " * (p + 2)}]
        items += [ScoringItem(prompt, f"reply {k} " + "sunny " * (k * 3 % 7 + 1)) for k in range(n)]
    # interleave prompts so grouping by prompt matters
    return items[::2] + items[1::2]


@pytest.mark.parametrize("max_length", [512, 60])  # 60: left truncation cuts into the shared prompt
def test_shared_prefix_scoring_is_exact(tiny_dir, max_length):
    from engine.scoring import plan_units

    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    items = _bon_items()
    shared = Scorer(rm, max_length=max_length, share_prefixes=True)
    plain = Scorer(rm, max_length=max_length, share_prefixes=False)
    units = plan_units(items, shared.encoder.encode_many(items), 4096)
    if max_length == 512:
        assert sum(1 for prefix, _ in units if prefix) == 4  # one shared prefix per prompt
    assert shared.score(items, max_tokens_per_batch=700) == pytest.approx(
        plain.score(items, max_tokens_per_batch=700), abs=1e-5)
    assert shared.score(items, max_tokens_per_batch=700) == pytest.approx(
        score_one_by_one(rm, items, max_length=max_length), abs=1e-4)


def test_varlen_attention_with_a_prefix_equals_the_concatenated_sequence():
    import torch

    from engine.attention import varlen_attention

    torch.manual_seed(0)
    prefix, suffix = 5, 4
    q, k, v = (torch.randn(prefix + suffix, 4, 8) for _ in range(3))
    whole = varlen_attention(q, k[:, :2], v[:, :2], [0, prefix + suffix])
    split = varlen_attention(q, k[:, :2], v[:, :2], [0, prefix, prefix + suffix], segment_prefix=[-1, 0])
    torch.testing.assert_close(split, whole)
