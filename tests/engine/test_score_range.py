"""Every recipe's trained model scores its own training conversations inside the barrier's range
(-5, 5), which is what makes an absolute threshold (`--min-score`) mean the same across models.

A tiny random backbone with hidden states of norm ~sqrt(H) and a few separable pairs is the hard
case: a probe fitted on differences alone gave scores far outside the range (see
docs/reward-model-training.md)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from engine.data import ScoringItem
from engine.head_probe import fit_linear_head, probe_from_states
from engine.losses import LossSettings
from engine.recipes import RECIPES, recipe_settings
from engine.reward_model import RewardModel
from engine.scoring import Scorer
from engine.train_config import TrainConfig
from engine.trainers import train
from tests.engine.test_training import make_pairs

BOUND = LossSettings().barrier_bound


def training_scores(out, pairs) -> list[float]:
    rm = RewardModel.load(out)
    return Scorer(rm, max_length=96).score([ScoringItem(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)])


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_lands_inside_the_range_on_its_training_data(recipe, tiny_dir, tmp_path):
    if RECIPES[recipe].get("qlora") and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    pairs = make_pairs(24)
    config = TrainConfig(**recipe_settings(recipe, {
        "base": str(tiny_dir), "out_dir": str(tmp_path / recipe), "pairs_per_step": 8, "max_length": 96,
        "max_packed_length": 1024, "precision": "fp32", "feature_cache": str(tmp_path / "features")}))
    result = train(config, pairs, progress=False)
    scores = training_scores(tmp_path / recipe, pairs)
    assert max(abs(s) for s in scores) < BOUND, (min(scores), max(scores))
    assert result.final_accuracy is not None and max(scores) - min(scores) > 0.1  # the head still separates


def test_the_probe_fits_under_the_penalty_and_plain_differences_would_not(tiny_dir):
    """Separable pairs: a fit on differences alone grows the scores' scale and leaves their offset free."""
    rm = RewardModel.from_base(tiny_dir)
    torch.manual_seed(0)
    raw = torch.randn(40, 2, 32) + 3.0  # (N, 2, H): states share a large mean, as real ones do
    raw[:, 0] += 0.5 * torch.randn(32)  # chosen replies lean one way
    states = torch.nn.functional.normalize(raw, dim=-1) * 32**0.5  # what an RMSNorm gives, roughly
    chosen, rejected = states[:, 0], states[:, 1]
    plain = torch.cat([chosen, rejected]).double() @ fit_linear_head(chosen - rejected, 1e-4)
    assert plain.abs().max() > BOUND  # the failure the penalty term fixes
    found = probe_from_states(rm, chosen, rejected)
    with torch.no_grad():
        fitted = torch.cat([chosen, rejected]) @ rm.value_head.weight.T
    assert fitted.abs().max() < BOUND and found["train_accuracy"] > 0.9
    assert found["score_range"] == pytest.approx([float(fitted.min()), float(fitted.max())], abs=1e-3)
