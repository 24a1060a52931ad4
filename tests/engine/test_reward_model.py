"""Reward model: packed == alone == stock HF, packed/padded gradients, export, LoRA and QLoRA."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine.errors import EngineError
from engine.losses import reward_loss
from engine.packing import pack_pairs, pack_sequences, pad_pairs
from engine.reward_model import LoraSettings, RewardModel
from tests.engine.helpers import sharpen_value_head

MAX_LENGTH = 512  # long enough that nothing is truncated (stock_scores does not truncate)


def encoded(rm, pairs):
    return rm.encoder(MAX_LENGTH).encode_pairs(pairs)


def stock_scores(directory, rm, pairs):
    """Scores from a plain transformers classifier loaded from `directory`, one conversation at a time."""
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = rm.encoder(MAX_LENGTH)
    out = []
    for pair in pairs:
        for reply in (pair.chosen, pair.rejected):
            text = encoder.render(pair.prompt, reply) + model.config.reward_token
            with torch.no_grad():
                out.append(model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item())
    return torch.tensor(out)


def train_steps(rm, pairs, steps=2, lr=1e-2):
    rm.train()
    optimizer = torch.optim.AdamW(rm.trainable_parameters(), lr=lr)
    batch = pack_pairs(encoded(rm, pairs))
    for _ in range(steps):
        reward_loss(rm.forward_packed(batch)).total.backward()
        optimizer.step()
        optimizer.zero_grad()
    return rm.eval()


def test_packed_scores_equal_each_conversation_alone(tiny_dir, pairs):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    conversations = [c for pair in encoded(rm, pairs) for c in pair]
    with torch.no_grad():
        packed = rm.forward_packed(pack_sequences(conversations))
        alone = torch.cat([rm.forward_packed(pack_sequences([c])) for c in conversations])
    assert packed.abs().max() > 0.1  # scores large enough for a leak between segments to show
    assert (packed - alone).abs().max() <= 1e-4


def test_packed_and_padded_give_the_same_loss_and_gradients(tiny_dir, pairs):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir)).train()
    enc = encoded(rm, pairs)
    results = []
    for batch, forward in ((pack_pairs(enc), rm.forward_packed), (pad_pairs(enc, rm.tokenizer.pad_token_id),
                                                                  rm.forward_padded)):
        rm.model.zero_grad()
        loss = reward_loss(forward(batch)).total
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in rm.model.named_parameters()}))
    (loss_packed, grads_packed), (loss_padded, grads_padded) = results
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-5, rtol=1e-5)
    assert grads_packed.keys() == grads_padded.keys()
    for name in grads_packed:
        scale = max(1.0, grads_packed[name].abs().max().item())  # embedding grads reach ~1e2 (RMSNorm of 0.02 weights)
        torch.testing.assert_close(grads_packed[name], grads_padded[name], atol=1e-5 * scale, rtol=1e-4, msg=name)
    assert grads_packed["model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0


def test_export_loads_with_stock_transformers(tiny_dir, pairs, tmp_path):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    with torch.no_grad():
        ours = rm.forward_packed(pack_pairs(encoded(rm, pairs)))
    rm.save(tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert (config["reward_token"], config["reward_token_id"]) == ("<|reward|>", rm.reward_token_id)
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    torch.testing.assert_close(stock_scores(tmp_path / "rm", rm, pairs), ours, atol=1e-5, rtol=0)
    again = RewardModel.load(tmp_path / "rm")
    with torch.no_grad():
        torch.testing.assert_close(again.forward_packed(pack_pairs(encoded(again, pairs))), ours, atol=1e-6, rtol=0)


def test_reward_token_is_a_new_special_token_with_mean_embedding(tiny_dir):
    rm = RewardModel.from_base(tiny_dir)
    base_vocab = len(AutoTokenizer.from_pretrained(tiny_dir))
    assert rm.reward_token_id == base_vocab and rm.reward_token == "<|reward|>"
    assert rm.tokenizer("ab<|reward|>", add_special_tokens=False)["input_ids"][-1] == rm.reward_token_id
    weight = rm.model.get_input_embeddings().weight
    torch.testing.assert_close(weight[base_vocab], weight[:base_vocab].mean(0))
    assert rm.seqcls.config.pad_token_id == rm.tokenizer.pad_token_id == 2


def test_existing_token_can_serve_as_reward_token(tiny_dir):
    rm = RewardModel.from_base(tiny_dir, reward_token_id=0)
    assert (rm.reward_token_id, rm.reward_token) == (0, "<|endoftext|>")
    assert rm.model.get_input_embeddings().weight.shape[0] == len(AutoTokenizer.from_pretrained(tiny_dir))
    with pytest.raises(EngineError, match="pad token"):
        RewardModel.from_base(tiny_dir, reward_token_id=2)
    with pytest.raises(EngineError, match="outside the vocabulary"):
        RewardModel.from_base(tiny_dir, reward_token_id=10_000)


def test_lora_trains_adapters_and_value_head_only(tiny_dir, pairs):
    rm = RewardModel.from_base(tiny_dir, lora=LoraSettings(r=4, dropout=0.0))
    before = {n: p.detach().clone() for n, p in rm.model.named_parameters()}
    trainable = {n for n, p in rm.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("score.modules_to_save" in n for n in trainable)
    assert any("trainable_tokens_delta" in n for n in trainable)
    assert not any(n.endswith("q_proj.base_layer.weight") for n in trainable)
    train_steps(rm, pairs)
    for name, param in rm.model.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == (name in trainable), name


def test_lora_adapter_and_merged_export_reproduce_scores(tiny_dir, pairs, tmp_path):
    rm = train_steps(RewardModel.from_base(tiny_dir, lora=LoraSettings(r=4, dropout=0.0)), pairs)
    with torch.no_grad():
        ours = rm.forward_packed(pack_pairs(encoded(rm, pairs)))
    rm.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    reloaded = RewardModel.load(tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.forward_packed(pack_pairs(encoded(reloaded, pairs))), ours, atol=1e-6,
                                   rtol=0)
    rm.save(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    torch.testing.assert_close(stock_scores(tmp_path / "merged", rm, pairs), ours, atol=1e-5, rtol=0)
    # the live model is untouched by the export and still has its adapter
    assert any("lora_A" in n for n, _ in rm.model.named_parameters())


def test_gradient_checkpointing_gives_the_same_gradients(tiny_dir, pairs):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        rm = RewardModel.from_base(tiny_dir).train()
        if checkpointing:
            rm.enable_gradient_checkpointing()
            assert rm.decoder.layers[0].gradient_checkpointing
        reward_loss(rm.forward_packed(pack_pairs(encoded(rm, pairs)))).total.backward()
        grads.append(torch.cat([p.grad.flatten() for p in rm.trainable_parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_batch_scorer_trains_under_ddp(tiny_dir, pairs, tmp_path):
    """The scores bypass the HF forward, so DDP wraps `batch_scorer`; gradients must match a plain run."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rm = RewardModel.from_base(tiny_dir, lora=LoraSettings(r=4, dropout=0.0)).train()
    batch = pack_pairs(encoded(rm, pairs))
    reward_loss(rm.forward_packed(batch)).total.backward()
    plain = [p.grad.clone() for p in rm.trainable_parameters()]
    rm.model.zero_grad()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(rm.batch_scorer)
        reward_loss(ddp(batch)).total.backward()
    finally:
        dist.destroy_process_group()
    for p, g in zip(rm.trainable_parameters(), plain):
        torch.testing.assert_close(p.grad, g)


def test_qlora_needs_lora(tiny_dir):
    with pytest.raises(EngineError, match="lora"):
        RewardModel.from_base(tiny_dir, qlora=True)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_qlora_runs_forward_and_backward_on_cpu(tiny_dir, pairs, tmp_path):
    import bitsandbytes as bnb

    rm = RewardModel.from_base(tiny_dir, lora=LoraSettings(r=4, dropout=0.0), qlora=True).train()
    four_bit = [m for m in rm.decoder.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 14  # 7 linear layers x 2 blocks, all NF4
    assert four_bit[0].weight.quant_state.quant_type == "nf4"
    assert not isinstance(rm.value_head.modules_to_save["default"], bnb.nn.Linear4bit)
    scores = rm.forward_packed(pack_pairs(encoded(rm, pairs)))
    reward_loss(scores).total.backward()
    named = dict(rm.model.named_parameters())
    lora_b = [p for n, p in named.items() if "lora_B" in n]
    assert lora_b and all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in lora_b)
    assert named["base_model.model.score.modules_to_save.default.weight"].grad.abs().sum() > 0
    assert all(p.grad is None for m in four_bit for p in m.parameters())
    # the adapter reloads onto a quantised backbone again and scores the same
    rm.eval().save_adapter(tmp_path / "adapter")
    reloaded = RewardModel.load(tmp_path / "adapter")
    assert reloaded.qlora
    with torch.no_grad():
        torch.testing.assert_close(reloaded.forward_packed(pack_pairs(encoded(rm, pairs))),
                                   rm.forward_packed(pack_pairs(encoded(rm, pairs))), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_smollm2_packed_scores_equal_each_conversation_alone(pairs):
    from engine.backbone import resolve_model_path

    rm = RewardModel.from_base(resolve_model_path("smollm2"))
    sharpen_value_head(rm)
    conversations = [c for pair in encoded(rm, pairs) for c in pair]
    with torch.no_grad():
        packed = rm.forward_packed(pack_sequences(conversations))
        alone = torch.cat([rm.forward_packed(pack_sequences([c])) for c in conversations])
    assert (packed - alone).abs().max() <= 1e-4


@pytest.mark.parametrize("lora", [False, True])
def test_num_layers_keeps_the_lowest_layers_and_reloads_as_such(tiny_dir, pairs, tmp_path, lora):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    settings = LoraSettings(r=4, dropout=0.0) if lora else None
    rm = RewardModel.from_base(tiny_dir, num_layers=1, lora=settings).eval()
    full = RewardModel.from_base(tiny_dir)
    assert len(rm.decoder.layers) == 1 and len(full.decoder.layers) == 2
    # the kept layer is the backbone's own first layer
    torch.testing.assert_close(rm.decoder.layers[0].mlp.up_proj.weight if not lora else
                               rm.decoder.layers[0].mlp.up_proj.base_layer.weight,
                               full.decoder.layers[0].mlp.up_proj.weight)
    batch = pack_pairs(encoded(rm, pairs))
    with torch.no_grad():
        expected = rm.forward_packed(batch)
    rm.save(tmp_path / "full")
    stock = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full").eval()
    assert stock.config.num_hidden_layers == 1
    reloaded = RewardModel.load(tmp_path / "full")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.forward_packed(batch), expected, atol=1e-5, rtol=0)
    if lora:
        rm.save_adapter(tmp_path / "adapter")
        again = RewardModel.load(tmp_path / "adapter")
        assert len(again.decoder.layers) == 1
        with torch.no_grad():
            torch.testing.assert_close(again.forward_packed(batch), expected, atol=1e-5, rtol=0)
    with pytest.raises(EngineError, match="num_layers=3"):
        RewardModel.from_base(tiny_dir, num_layers=3)
