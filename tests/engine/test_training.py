"""The trainer: what it changes, gradient-accumulation invariance, schedule, checkpoints, resume, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from engine.checkpoint import trainable_state
from engine.data import PreferencePair
from engine.errors import EngineError
from engine.reward_model import RewardModel
from engine.train_config import TrainConfig
from engine.train_schedule import lr_lambda, step_pair_indices, total_steps
from engine.training import build_reward_model, train_reward_model


def make_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair([{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}],
                           f"It is {2 * i}.", f"I don't know, maybe {i}{i}? " * (1 + i % 3)) for i in range(n)]


def config(tiny_dir, out, **overrides) -> TrainConfig:
    settings = dict(base=str(tiny_dir), out_dir=str(out), pairs_per_step=8, epochs=1, lr=1e-3, max_length=96,
                    max_packed_length=4096, checkpoint_every=100, warmup_ratio=0.0, precision="fp32")
    settings.update(overrides)
    return TrainConfig(**settings)


def _params(out) -> dict[str, torch.Tensor]:
    rm = RewardModel.load(out)
    return {n: p.detach().clone() for n, p in rm.model.named_parameters()}


def test_full_finetune_changes_every_trainable_and_no_frozen_parameter(tiny_dir, tmp_path):
    cfg = config(tiny_dir, tmp_path / "rm", freeze_layers=1, max_steps=3)
    torch.manual_seed(cfg.seed)
    before = trainable_state(build_reward_model(cfg, torch.device("cpu")))  # same seed -> same init
    base = build_reward_model(cfg, torch.device("cpu"))
    all_before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    train_reward_model(cfg, make_pairs(24), progress=False)
    after = _params(tmp_path / "rm")
    frozen = [n for n in all_before if n not in before]
    assert frozen and any("layers.0." in n for n in frozen) and any("embed_tokens" in n for n in frozen)
    for name in frozen:
        assert torch.equal(after[name], all_before[name]), f"frozen {name} changed"
    for name in before:
        if name.startswith("score."):  # the value head is freshly initialised from the seed
            assert not torch.equal(after[name], before[name])
        else:
            assert not torch.equal(after[name], all_before[name]), f"trainable {name} did not change"


def test_lora_trains_adapters_value_head_and_reward_token_only(tiny_dir, tmp_path):
    cfg = config(tiny_dir, tmp_path / "rm", lora=True, lora_dropout=0.0, max_steps=3)
    rm = build_reward_model(cfg, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in rm.model.named_parameters()}
    trainable = {n for n, p in rm.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("score" in n for n in trainable)
    train_reward_model(cfg, make_pairs(24), progress=False)
    adapter = RewardModel.load(tmp_path / "rm" / "adapter")
    after = {n: p.detach() for n, p in adapter.model.named_parameters()}
    for name, value in before.items():
        if "original_module" in name:
            continue  # peft's unused copy of the value head: re-initialised at load, never used
        if name in trainable:
            assert not torch.equal(after[name], value), f"trainable {name} did not change"
        else:
            assert torch.equal(after[name], value), f"frozen {name} changed"


def _first_step_gradients(cfg: TrainConfig, pairs) -> tuple[dict, dict, int]:
    """Gradients and metrics of step 0, captured just before the optimizer uses them."""
    from engine.distributed import compute_init
    from engine.packing import group_pairs
    from engine.training import _Trainer

    torch.manual_seed(cfg.seed)  # the same value-head initialisation for every trainer
    trainer = _Trainer(cfg, compute_init("cpu"), pairs, None, progress=False)
    n_micro = len(group_pairs(trainer.train, cfg.max_packed_length, trainer.share_prefix))
    grads: dict[str, torch.Tensor] = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in trainer.rm.model.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    metrics = trainer.run_step(0)
    return grads, metrics, n_micro


def test_one_step_of_8_pairs_equals_two_accumulated_micro_batches_of_4(tiny_dir, tmp_path):
    pairs = make_pairs(8)
    whole, metrics_whole, n_whole = _first_step_gradients(
        config(tiny_dir, tmp_path / "one", max_grad_norm=0.0), pairs)
    from engine.packing import packed_pair_size

    longest = max(packed_pair_size(p, share_prefix=True)
                  for p in RewardModel.from_base(tiny_dir).encoder(96).encode_pairs(pairs))
    # a token budget of about four pairs splits the same step into micro-batches (gradient accumulation)
    split, metrics_split, n_split = _first_step_gradients(
        config(tiny_dir, tmp_path / "two", max_grad_norm=0.0, max_packed_length=max(192, 4 * longest)), pairs)
    assert n_whole == 1 and n_split >= 2
    assert whole.keys() == split.keys() and whole
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-5, atol=1e-7)
    assert metrics_split["loss"] == pytest.approx(metrics_whole["loss"], abs=1e-6)
    assert metrics_split["accuracy"] == metrics_whole["accuracy"]


@pytest.mark.parametrize("lora", [False, True])
def test_computing_a_pairs_prompt_once_gives_the_gradients_of_whole_pairs(tiny_dir, tmp_path, lora):
    """The default layout (each pair's shared prompt once, both replies attending to it) trains
    exactly like the InternLM2 layout (both conversations whole): same loss, scores and gradients."""
    turns = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me about tea."},
             {"role": "assistant", "content": "Tea is a drink."}]
    pairs = [PreferencePair([*turns, {"role": "user", "content": f"And {i}?"}], f"Yes, {i}.", f"No idea {i}" * (i % 3 + 1))
             for i in range(8)]
    settings = dict(max_grad_norm=0.0, lora=lora, lora_dropout=0.0, max_length=512)  # no truncation
    shared, metrics_shared, _ = _first_step_gradients(config(tiny_dir, tmp_path / "shared", **settings), pairs)
    whole, metrics_whole, _ = _first_step_gradients(
        config(tiny_dir, tmp_path / "whole", pack_whole_pairs=True, **settings), pairs)
    assert shared.keys() == whole.keys() and whole
    for name in whole:
        torch.testing.assert_close(shared[name], whole[name], rtol=1e-5, atol=1e-6)
    for key in ("loss", "chosen_score", "rejected_score"):
        assert metrics_shared[key] == pytest.approx(metrics_whole[key], abs=1e-6)
    assert metrics_shared["tokens"] == metrics_whole["tokens"] == metrics_whole["computed_tokens"]
    assert metrics_shared["computed_tokens"] < 0.6 * metrics_whole["tokens"]  # the long prompt ran once per pair


def test_schedule_warms_up_then_decays_by_cosine():
    cfg = TrainConfig(base="x", out_dir="y", warmup_ratio=0.1, min_lr_ratio=0.1)
    f = lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.55, abs=0.01)
    assert f(99) == pytest.approx(0.1, abs=0.01)
    assert all(f(i) >= f(i + 1) for i in range(10, 99))


def test_data_order_is_seeded_and_drops_the_last_partial_step():
    assert total_steps(TrainConfig(base="x", out_dir="y", pairs_per_step=8, epochs=2), 20) == 4
    first = step_pair_indices(20, 8, 0, 0)
    assert first == step_pair_indices(20, 8, 0, 0) and first != step_pair_indices(20, 8, 1, 0)
    epoch = step_pair_indices(20, 8, 0, 0) + step_pair_indices(20, 8, 0, 1)
    assert len(set(epoch)) == 16
    with pytest.raises(EngineError, match="cannot fill one step"):
        total_steps(TrainConfig(base="x", out_dir="y", pairs_per_step=8), 5)


def test_metrics_checkpoints_and_export(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "rm"
    result = train_reward_model(config(tiny_dir, out, epochs=2, checkpoint_every=2, keep_checkpoints=2),
                                make_pairs(24), make_pairs(30)[24:], progress=False)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 7))
    for key in ("loss", "accuracy", "chosen_score", "rejected_score", "tokens_per_s", "lr"):
        assert all(isinstance(m[key], float) for m in lines), key
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004", "step-000006"]
    assert result.eval["n"] == 6 and 0 <= result.eval["accuracy"] <= 1
    with pytest.raises(EngineError, match="pass --resume"):
        train_reward_model(config(tiny_dir, out), make_pairs(24), progress=False)
    # a plain transformers user gets the engine's score
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    pair = make_pairs(1)[0]
    text = tokenizer.apply_chat_template(pair.prompt + [{"role": "assistant", "content": pair.chosen}],
                                         tokenize=False) + model.config.reward_token
    stock = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    from engine.scoring import Scorer
    from engine.data import ScoringItem
    ours = Scorer(RewardModel.load(out)).score([ScoringItem(pair.prompt, pair.chosen)])[0]
    assert stock == pytest.approx(ours, abs=1e-5)


def test_export_from_a_checkpoint_matches_the_final_model(tiny_dir, tmp_path):
    from engine.export import export_reward_model
    from engine.data import ScoringItem
    from engine.scoring import Scorer

    out = tmp_path / "rm"
    train_reward_model(config(tiny_dir, out, max_steps=2, checkpoint_every=2), make_pairs(24), progress=False)
    exported = export_reward_model(out / "checkpoints" / "step-000002", tmp_path / "exported")
    items = [ScoringItem(p.prompt, p.chosen) for p in make_pairs(4)]
    assert Scorer(RewardModel.load(exported)).score(items) == pytest.approx(
        Scorer(RewardModel.load(out)).score(items), abs=1e-6)


_RESUME_CHILD = """
import json, sys, time
import engine.checkpoint as ck
original = ck.save_checkpoint
def save_then_stall(*args, **kwargs):
    path = original(*args, **kwargs)
    if args[1] == 4:
        print("SAVED", flush=True)
        time.sleep(120)
    return path
ck.save_checkpoint = save_then_stall
import engine.training as tr
tr.save_checkpoint = save_then_stall
from cli import main
main()
"""


def test_sigkill_then_resume_ends_at_the_same_loss_as_an_uninterrupted_run(tiny_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    with open(data, "w") as f:
        for p in make_pairs(48):
            f.write(json.dumps({"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                                "rejected": [{"role": "assistant", "content": p.rejected}]}) + "\n")
    args = ["--db", str(tmp_path / "t.duckdb"), "-q", "rm", "train", "--data", str(data), "--base", str(tiny_dir),
            "--pairs-per-step", "8", "--epochs", "2", "--lr", "1e-3", "--max-length", "96",
            "--checkpoint-every", "2", "--eval-fraction", "0", "--lora", "--lora-dropout", "0.1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", _RESUME_CHILD, *args, "--out", str(tmp_path / "killed")],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline, line = time.monotonic() + 300, ""
        while "SAVED" not in line and time.monotonic() < deadline:
            line = child.stdout.readline()
        assert "SAVED" in line
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    resumed = subprocess.run([sys.executable, "-m", "workbench", *args, "--out", str(tmp_path / "killed"),
                              "--resume", "--json"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] == 4
    straight = subprocess.run([sys.executable, "-m", "workbench", *args, "--out", str(tmp_path / "straight"),
                               "--json"], capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stderr
    killed = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    clean = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in killed] == [m["step"] for m in clean] == list(range(1, 13))
    for a, b in zip(killed, clean):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6), a["step"]
