"""LoRA dropout with a cheaper mask: the same function as nn.Dropout, forward and backward."""

from __future__ import annotations

import pytest
import torch

from engine.lora_dropout import FastDropout


def test_keeps_each_element_with_probability_one_minus_p_and_rescales_it():
    torch.manual_seed(0)
    p, n = 0.05, 1_000_000
    x = torch.ones(n, requires_grad=True)
    y = FastDropout(p).train()(x)
    kept = y != 0
    assert torch.allclose(y.detach()[kept], torch.tensor(1 / (1 - p)))
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(1 - kept.float().mean().item() - p) < 5 * sigma  # dropped share is p
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(sum y)/dx = mask / (1 - p): the same mask


def test_masks_differ_between_calls_and_follow_the_seed():
    x = torch.randn(4, 64)
    drop = FastDropout(0.5).train()
    torch.manual_seed(1)
    a, b = drop(x), drop(x)
    torch.manual_seed(1)
    assert torch.equal(drop(x), a) and not torch.equal(a, b)


@pytest.mark.parametrize("mode", ["eval", "p0"])
def test_passes_the_input_through_in_eval_mode_and_at_p_zero(mode):
    x = torch.randn(8, 16)
    drop = FastDropout(0.3).eval() if mode == "eval" else FastDropout(0.0).train()
    assert drop(x) is x


def test_lora_models_train_with_it_in_place_of_every_adapter_dropout(tiny_dir, tmp_path):
    from engine.reward_model import RewardModel
    from engine.train_config import TrainConfig
    from engine.training import build_reward_model

    cfg = TrainConfig(base=str(tiny_dir), out_dir=str(tmp_path / "rm"), lora=True, lora_dropout=0.1)
    rm = build_reward_model(cfg, torch.device("cpu"))
    dropouts = [d for m in rm.model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
                for d in m.lora_dropout.values()]
    assert dropouts and all(isinstance(d, FastDropout) and d.p == 0.1 for d in dropouts)
    rm.save_adapter(tmp_path / "adapter")  # a resumed adapter trains with it too
    again = RewardModel.load(tmp_path / "adapter", trainable=True)
    assert all(isinstance(d, FastDropout) for m in again.model.modules()
               if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict) for d in m.lora_dropout.values())
