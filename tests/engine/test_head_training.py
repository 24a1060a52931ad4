"""Frozen-backbone training from cached features (--head-only) and the feature cache itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.data import ScoringItem
from engine.errors import EngineError
from engine.feature_cache import FeatureCache, FrozenFeatures, backbone_fingerprint, final_norm
from engine.head_training import frozen_backbone, train_head_only
from engine.recipes import recipe_settings
from engine.reward_model import RewardModel
from engine.scoring import Scorer
from engine.training import train_reward_model
from tests.engine.test_training import config, make_pairs


def test_saved_model_scores_are_the_head_on_cached_features(tiny_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", 10**8)
    train, heldout = make_pairs(24), make_pairs(30)[24:]
    cfg = config(tiny_dir, tmp_path / "rm", head_only=True, head_init="probe", epochs=2)
    result = train_head_only(cfg, train, heldout, cache=cache, progress=False)
    assert result.features["backbone_forwards"] == 60 and result.features["cache_hits"] == 0
    assert result.eval["n"] == 6 and json.loads((tmp_path / "rm" / "head_probe.json").read_text())["pairs"] == 24

    saved = RewardModel.load(tmp_path / "rm")  # a plain HF directory, scored the normal way
    items = [ScoringItem(p.prompt, r) for p in train + heldout for r in (p.chosen, p.rejected)]
    scores = torch.tensor(Scorer(saved, max_length=cfg.max_length, precision="fp32").score(items))
    features = FrozenFeatures(saved, "fp32", cache, progress=False)  # the same backbone: every row cached
    x = features.compute(saved.encoder(cfg.max_length).encode_many(items))
    assert features.backbone_forwards == 0 and features.cache_hits == len(items)
    with torch.no_grad():
        from_cache = saved.value_head(final_norm(saved)(x)).squeeze(-1)
    torch.testing.assert_close(from_cache, scores, atol=1e-5, rtol=1e-5)
    assert scores.std() > 1e-3  # the trained head separates something


def test_feature_pass_runs_a_shared_start_once_and_matches_each_conversation_alone(tiny_dir, monkeypatch):
    from engine import reward_pass

    rm = RewardModel.from_base(tiny_dir)
    items = [ScoringItem([{"role": "user", "content": f"Tell me about topic {k}, briefly."}], f"Reply {j}" * (j + 1))
             for j in range(3) for k in range(4)]  # replies to one prompt are not adjacent
    sequences = rm.encoder(256).encode_many(items)
    packed_tokens = []
    batches = reward_pass.packed_unit_batches

    def counting(*args, **kwargs):
        for order, batch in batches(*args, **kwargs):
            packed_tokens.append(batch.input_ids.shape[1])
            yield order, batch

    monkeypatch.setattr(reward_pass, "packed_unit_batches", counting)  # the one no-grad pass
    together = FrozenFeatures(rm, "fp32", None, progress=False).compute(sequences)
    assert sum(packed_tokens) < 0.8 * sum(len(s) for s in sequences)  # each prompt ran once, not three times
    alone = torch.cat([FrozenFeatures(rm, "fp32", None, progress=False).compute([s]) for s in sequences])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_a_retrain_on_overlapping_pairs_runs_the_backbone_only_for_new_conversations(tiny_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", 10**8)
    pairs = make_pairs(36)
    train_head_only(config(tiny_dir, tmp_path / "a", head_only=True), pairs[:24], cache=cache, progress=False)
    again = train_head_only(config(tiny_dir, tmp_path / "b", head_only=True, lr=3e-3, epochs=3), pairs[12:],
                            cache=cache, progress=False)
    assert again.features["backbone_forwards"] == 2 * 12  # pairs 24..35 are new
    assert again.features["cache_hits"] == 2 * 12
    assert json.loads((tmp_path / "b" / "features.json").read_text())["backbone_forwards"] == 24


def test_head_only_trains_what_freezing_every_layer_trains(tiny_dir, tmp_path):
    """Two implementations, one result: the full trainer with every layer frozen vs. cached features."""
    train = make_pairs(32)
    settings = dict(max_steps=4, lr=1e-2, max_grad_norm=0.0)
    train_reward_model(config(tiny_dir, tmp_path / "full", freeze_layers=2, **settings), train, progress=False)
    train_head_only(config(tiny_dir, tmp_path / "head", head_only=True, **settings), train,
                    cache=FeatureCache(tmp_path / "cache", 10**8), progress=False)
    full, head = RewardModel.load(tmp_path / "full"), RewardModel.load(tmp_path / "head")
    for a, b in ((full.value_head.weight, head.value_head.weight), (final_norm(full).weight, final_norm(head).weight)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    before = RewardModel.from_base(tiny_dir)
    assert not torch.allclose(final_norm(head).weight, final_norm(before).weight)  # the norm did train
    assert torch.equal(head.decoder.layers[0].mlp.up_proj.weight, before.decoder.layers[0].mlp.up_proj.weight)
    assert frozen_backbone(config(tiny_dir, tmp_path / "x", freeze_layers=2))
    assert not frozen_backbone(config(tiny_dir, tmp_path / "x", freeze_layers=1))


def test_fingerprint_follows_the_weights_and_the_precision(tiny_dir):
    rm = RewardModel.from_base(tiny_dir)
    first = backbone_fingerprint(rm, "fp32")
    assert backbone_fingerprint(rm, "bf16") != first
    with torch.no_grad():
        final_norm(rm).weight.mul_(2)  # trained with the head: not part of the features
    assert backbone_fingerprint(rm, "fp32") == first
    with torch.no_grad():
        rm.decoder.layers[1].self_attn.q_proj.weight[0, 0] += 1e-3
    assert backbone_fingerprint(rm, "fp32") != first


def test_cache_evicts_least_recently_used_and_drops_a_changed_backbone(tmp_path):
    row = np.ones(250, dtype=np.float32)  # 1,000 bytes
    cache = FeatureCache(tmp_path, max_bytes=3_000)
    cache.put({"a": row, "b": row, "c": row}, fingerprint="f1", source="base")
    assert set(cache.get(["a"])) == {"a"}  # a is now the most recently used
    cache.put({"d": row}, fingerprint="f1", source="base")
    assert set(cache.get(["a", "b", "c", "d"])) == {"a", "c", "d"} and cache.size_bytes() == 3_000
    cache.put({"e": row}, fingerprint="f2", source="base")  # the base's weights changed: old rows go
    assert set(cache.get(["a", "c", "d", "e"])) == {"e"}
    reopened = FeatureCache(tmp_path, max_bytes=3_000)
    np.testing.assert_array_equal(reopened.get(["e"])["e"], row)
    with pytest.raises(EngineError, match="positive size"):
        FeatureCache(tmp_path, max_bytes=0)


def test_recipes_default_to_head_only_and_yield_to_explicit_flags():
    assert recipe_settings(None, {})["head_only"] is True
    assert recipe_settings(None, {"epochs": 3})["epochs"] == 3
    assert recipe_settings(None, {"lora": True}) == {"lora": True}  # a mode flag: no recipe
    assert recipe_settings(None, {"epochs": 3}, world_size=2) == {"epochs": 3}  # torchrun: no recipe
    assert recipe_settings(None, {"freeze_layers": 0}) == {"freeze_layers": 0}  # full fine-tuning, chosen
    lora = recipe_settings("lora", {"lr": 1e-3})
    assert lora["lora"] and lora["lr"] == 1e-3 and lora["head_init"] == "probe"
    with pytest.raises(EngineError, match="unknown recipe"):
        recipe_settings("fast", {})
    with pytest.raises(EngineError, match="not with lora"):
        from engine.train_config import TrainConfig

        TrainConfig(**recipe_settings("head-only", {"lora": True}))


def test_the_lp_ft_probe_reads_the_features_a_head_only_run_cached(tiny_dir, tmp_path, capsys):
    train = make_pairs(32)
    cache_dir = tmp_path / "cache"
    train_head_only(config(tiny_dir, tmp_path / "head", head_only=True, head_init="probe", max_steps=1,
                           feature_cache=str(cache_dir)), train, progress=False)
    capsys.readouterr()
    train_reward_model(config(tiny_dir, tmp_path / "full", head_init="probe", max_steps=1,
                              feature_cache=str(cache_dir)), train, progress=True)
    assert "head probe: backbone" not in capsys.readouterr().err  # every state came from the cache
    first, second = (json.loads((tmp_path / d / "head_probe.json").read_text()) for d in ("head", "full"))
    assert first["l2"] == second["l2"] and first["cv_accuracy"] == second["cv_accuracy"]


def test_head_only_refuses_a_nan_loss_before_the_optimizer_step(tiny_dir, tmp_path, monkeypatch):
    import engine.head_training as head_training

    real = head_training.reward_loss

    def nan_loss(scores, settings):
        loss = real(scores, settings)
        loss.total = loss.total * float("nan")
        return loss

    monkeypatch.setattr(head_training, "reward_loss", nan_loss)
    out = tmp_path / "rm"
    with pytest.raises(EngineError, match=r"step 1: the loss is nan"):
        train_head_only(config(tiny_dir, out, head_only=True, max_steps=2), make_pairs(16),
                        cache=FeatureCache(tmp_path / "cache", 10**8), progress=False)
    assert (out / "metrics.jsonl").read_text() == "" and not (out / "training_complete.json").exists()
