"""Helpers shared by the engine tests."""

from __future__ import annotations

import torch

from engine.reward_model import RewardModel


def sharpen_value_head(rm: RewardModel, seed: int = 0) -> RewardModel:
    """Give the value head O(1) weights so scores are large enough for differences to show."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in rm.value_head.parameters():
            p.normal_(0.0, 1.0)
    return rm
