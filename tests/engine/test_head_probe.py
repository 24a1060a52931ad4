"""Linear probing of the value head before fine-tuning (TrainConfig.head_init = "probe")."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import EngineError
from engine.head_probe import cross_validate, fit_linear_head, reward_states
from engine.reward_model import LoraSettings, RewardModel
from engine.train_config import TrainConfig
from engine.training import build_reward_model, train_reward_model
from tests.engine.test_training import config, make_pairs


def test_fit_linear_head_recovers_the_direction_that_ranks_the_pairs():
    torch.manual_seed(0)
    truth = torch.randn(16)
    x = torch.randn(400, 16)
    diff = x * torch.sign(x @ truth).unsqueeze(1)  # every pair ranked by `truth`
    w = fit_linear_head(diff, l2=1e-4)
    assert float(((diff.double() @ w) > 0).double().mean()) == 1.0
    assert torch.nn.functional.cosine_similarity(w.float(), truth, dim=0) > 0.9
    # pure noise: cross-validation cannot do better than chance by much, for any strength
    noise = torch.randn(400, 16)
    assert all(0.35 < acc < 0.65 for acc in cross_validate(noise).values())


def test_reward_states_are_the_hidden_states_the_value_head_reads(tiny_dir, pairs):
    torch.manual_seed(0)
    rm = RewardModel.from_base(tiny_dir)
    encoded = rm.encoder(256).encode_pairs(pairs)
    chosen, rejected = reward_states(rm, encoded, 4096, "fp32")
    # the head applied to the states gives the model's own scores
    from engine.packing import pack_pairs

    with torch.no_grad():
        scores = rm.eval().forward_packed(pack_pairs(encoded, pad_token_id=rm.tokenizer.pad_token_id))
    head = rm.value_head.weight.detach()
    torch.testing.assert_close((chosen @ head.T).squeeze(1), scores[0::2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((rejected @ head.T).squeeze(1), scores[1::2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lora", [False, True])
def test_probe_sets_the_head_before_training_and_records_what_it_found(tiny_dir, tmp_path, lora):
    cfg = config(tiny_dir, tmp_path / "rm", head_init="probe", max_steps=1, lora=lora, lr=1e-9)
    train = make_pairs(32)
    train_reward_model(cfg, train, progress=False)
    found = json.loads((tmp_path / "rm" / "head_probe.json").read_text())
    assert found["pairs"] == 32 and found["l2"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert found["train_accuracy"] > 0.9  # the tiny pairs differ in length and wording: linearly separable
    # one step at lr 1e-9 leaves the probed head as it was fitted: the saved model ranks like the probe
    torch.manual_seed(cfg.seed)
    fresh = build_reward_model(cfg, torch.device("cpu"))
    trained = RewardModel.load(tmp_path / "rm")
    head = trained.value_head.weight.detach()
    assert not torch.allclose(head, fresh.value_head.weight.detach() if not lora else
                              fresh.value_head.modules_to_save["default"].weight.detach())
    encoded = trained.encoder(96).encode_pairs(train)
    chosen, rejected = reward_states(trained, encoded, 4096, "fp32")
    accuracy = float((((chosen - rejected) @ head.T) > 0).double().mean())
    assert accuracy == pytest.approx(found["train_accuracy"], abs=0.04)


def test_probe_is_refused_where_ranks_do_not_hold_whole_conversations():
    with pytest.raises(EngineError, match="head_init=probe"):
        TrainConfig(base="x", out_dir="y", head_init="probe", sp_size=2)
    with pytest.raises(EngineError, match="head_init must be"):
        TrainConfig(base="x", out_dir="y", head_init="zero")


def test_a_probed_run_resumes_to_the_same_loss(tiny_dir, tmp_path):
    """The probe runs once, at the start; a resumed run takes the head from its checkpoint."""
    pairs = make_pairs(32)
    whole = train_reward_model(config(tiny_dir, tmp_path / "whole", head_init="probe", checkpoint_every=2),
                               pairs, progress=False)

    def crash(metrics):
        if metrics["step"] == 3:  # after the checkpoint of step 2
            raise KeyboardInterrupt

    part = config(tiny_dir, tmp_path / "part", head_init="probe", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(part, pairs, progress=False, on_step=crash)
    probed = (tmp_path / "part" / "head_probe.json").read_text()
    resumed = train_reward_model(part, pairs, resume=True, progress=False)
    assert resumed.resumed_from == 2 and (tmp_path / "part" / "head_probe.json").read_text() == probed
    assert resumed.final_loss == pytest.approx(whole.final_loss, abs=1e-6)
