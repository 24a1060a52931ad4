"""Packing layout, padding layout and token-budget grouping."""

from __future__ import annotations

import random

import pytest
import torch

from engine.errors import EngineError
from engine.packing import group_by_token_budget, group_pairs, pack_pairs, pad_pairs

PAIRS = [([10, 11, 12], [20, 21]), ([30], [40, 41, 42, 43])]


def test_pack_pairs_layout():
    batch = pack_pairs(PAIRS)
    assert batch.input_ids.tolist() == [[10, 11, 12, 20, 21, 30, 40, 41, 42, 43]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]]
    assert batch.cu_seqlens.dtype == torch.int32
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 6, 10]
    assert batch.reward_positions.tolist() == [2, 4, 5, 9]  # the last token of each conversation
    assert (batch.max_seqlen, batch.n_pairs, batch.n_tokens) == (4, 2, 10)


def test_pack_pairs_sharing_prefix_stores_each_pairs_common_start_once():
    pairs = [([1, 2, 3, 4], [1, 2, 5]), ([7, 8], [9]), ([6, 6], [6, 6])]
    batch = pack_pairs(pairs, share_prefix=True)
    # pair 0 shares [1, 2]; pair 1 shares nothing; identical conversations keep their last token each
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 7, 8, 9, 6, 6, 6]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 2, 0, 1, 0, 0, 1, 1]]
    assert batch.cu_seqlens.tolist() == [0, 2, 4, 5, 7, 8, 9, 10, 11]
    assert batch.segment_prefix == [-1, 0, 0, -1, -1, -1, 5, 5]
    assert batch.reward_positions.tolist() == [3, 4, 6, 7, 9, 10]  # chosen, rejected, ...
    assert (batch.n_pairs, batch.n_tokens) == (3, 14)  # both whole conversations count as trained on
    assert group_pairs(pairs, 11, share_prefix=True) == [[0, 1, 2]]  # 11 tokens shared, 14 whole
    assert len(group_pairs(pairs, 11)) == 2
    with pytest.raises(EngineError, match="no padding"):
        pack_pairs(pairs, pad_to_multiple_of=2, share_prefix=True)


def test_groups_by_token_prefix_finds_conversations_that_start_alike():
    from engine.packing import groups_by_token_prefix

    seqs = [[1] * 10 + [2], [5] * 3, [1] * 10 + [3, 4], [1] * 9 + [7] * 5, [5] * 3 + [6]]
    # sorted: 0, 2 share 10 tokens; 3 shares only 9 with them (it would shorten theirs), so starts its
    # own group; 1 and 4 share 2 (< MIN_SHARED_PREFIX), so go alone
    assert groups_by_token_prefix(seqs) == [[0, 2], [3], [1], [4]]
    # a conversation that would shorten what a group shares starts its own
    assert groups_by_token_prefix([[1] * 20 + [2], [1] * 20 + [3], [1] * 9 + [9]]) == [[0, 1], [2]]


def test_pad_to_multiple_adds_a_dummy_segment_that_never_scores():
    batch = pack_pairs(PAIRS, pad_to_multiple_of=4, pad_token_id=99)
    assert batch.input_ids.shape == (1, 12)
    assert batch.input_ids[0, 10:].tolist() == [99, 99]
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 6, 10, 12]
    assert batch.position_ids[0, 10:].tolist() == [0, 1]
    assert batch.reward_positions.tolist() == [2, 4, 5, 9]
    assert batch.n_tokens == 10
    assert pack_pairs(PAIRS, pad_to_multiple_of=5).cu_seqlens.tolist() == [0, 3, 5, 6, 10]  # already a multiple


def test_pad_pairs_layout_matches_packing_order():
    batch = pad_pairs(PAIRS, pad_token_id=0)
    assert batch.input_ids.tolist() == [[10, 11, 12, 0], [20, 21, 0, 0], [30, 0, 0, 0], [40, 41, 42, 43]]
    assert batch.attention_mask.sum(1).tolist() == [3, 2, 1, 4]
    assert batch.reward_positions.tolist() == [2, 1, 0, 3]
    assert (batch.n_pairs, batch.n_tokens) == (2, 10)


def test_group_by_token_budget_respects_budget_and_uses_every_item_once():
    rng = random.Random(0)
    sizes = [rng.randint(1, 100) for _ in range(500)]
    groups = group_by_token_budget(sizes, 256)
    assert sorted(i for g in groups for i in g) == list(range(500))
    assert all(sum(sizes[i] for i in g) <= 256 for g in groups)
    assert all(g == sorted(g) for g in groups)  # input order kept inside a group
    assert len(groups) <= -(-sum(sizes) // 256) + 2  # near the lower bound


def test_best_fit_decreasing_beats_in_order_filling():
    # filling in input order: [6], [5, 4], [3, 2] -> 3 groups; best fit decreasing: [6, 4], [5, 3, 2]
    groups = group_by_token_budget([6, 5, 4, 3, 2], 10)
    assert sorted(groups) == [[0, 2], [1, 3, 4]]


def test_a_pair_longer_than_the_budget_is_an_error():
    with pytest.raises(EngineError, match="raise max_packed_length or lower max_length"):
        group_pairs(PAIRS, max_packed_length=4)
    assert group_pairs(PAIRS, max_packed_length=5) == [[0], [1]]
