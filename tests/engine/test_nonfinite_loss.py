"""Training stops with a clear error, before applying the step, when the loss or gradient is NaN/inf."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import EngineError
from engine.training import train_reward_model
from tests.engine.test_training import config, make_pairs


def test_a_learning_rate_that_blows_up_stops_training_naming_the_step_and_lr(tiny_dir, tmp_path):
    out = tmp_path / "rm"
    cfg = config(tiny_dir, out, lr=1e30, max_steps=4, checkpoint_every=1)
    with pytest.raises(EngineError) as caught:
        train_reward_model(cfg, make_pairs(32), progress=False)
    message = str(caught.value)
    assert "step 2" in message and "not a finite number" in message and "--lr (now 1e+30)" in message
    # step 1 ran (its loss was finite), step 2 was refused: nothing NaN was logged or checkpointed
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in logged)
    assert not (out / "checkpoints" / "step-000002").exists()


def test_a_nan_loss_is_refused_before_the_optimizer_step(tiny_dir, tmp_path, monkeypatch):
    import engine.training as training

    real = training.reward_loss

    def nan_loss(scores, settings):
        loss = real(scores, settings)
        loss.total = loss.total * float("nan")
        return loss

    monkeypatch.setattr(training, "reward_loss", nan_loss)
    with pytest.raises(EngineError, match=r"step 1: the loss is nan"):
        train_reward_model(config(tiny_dir, tmp_path / "rm", max_steps=2), make_pairs(16), progress=False)
