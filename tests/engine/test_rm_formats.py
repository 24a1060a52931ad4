"""Reward models of every format scored by the engine agree with a plain reference computation (fp32).

The references are written the way each ecosystem scores: transformers' own classifier forward
(hf, TRL), OpenRLHF's pooling and normalisation re-done by hand on left-padded batches
(openrlhf), and the remote-code model's own forward with the reward token appended (internlm2).
"""

import json

import pytest
import torch

from engine.data import ScoringItem
from engine.errors import EngineError
from engine.foreign_rm import load_reward_model
from engine.rm_formats import inspect_reward_model
from engine.scoring import Scorer
from tests.rm_builders import (CONVERSATIONS, INTERNLM2_REWARD_TOKEN_ID, make_hf_rm, make_internlm2_rm,
                               make_openrlhf_rm, make_trl_rm)

ITEMS = [ScoringItem(p, r) for p, r in CONVERSATIONS]
TOL = 1e-4


def engine_scores(path, share_prefixes=None, trust_remote_code=False, **inspect_kwargs):
    spec = inspect_reward_model(path, trust_remote_code=trust_remote_code, **inspect_kwargs)
    model = load_reward_model(path, spec, trust_remote_code=trust_remote_code)
    return spec, Scorer(model, precision="fp32", share_prefixes=share_prefixes).score(ITEMS)


@torch.no_grad()
def transformers_scores(path, label=0, batch=False):
    """A plain transformers loop: chat template, AutoModelForSequenceClassification, logits[:, label]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    texts = [tokenizer.apply_chat_template(p + [{"role": "assistant", "content": r}], tokenize=False)
             for p, r in CONVERSATIONS]
    if batch:  # one right-padded batch: transformers' pooling must find each row's last non-pad token
        enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return model(**enc).logits[:, label].tolist()
    return [model(**tokenizer(t, add_special_tokens=False, return_tensors="pt")).logits[0, label].item()
            for t in texts]


def assert_close(a, b):
    assert len(a) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b)) < TOL, (a, b)


def test_hf_matches_transformers_packed_and_shared(tmp_path):
    path = make_hf_rm(tmp_path / "hf")
    reference = transformers_scores(path)
    assert_close(transformers_scores(path, batch=True), reference)
    spec, shared = engine_scores(path)
    assert (spec.format, spec.pooling) == ("hf", "last-non-pad")
    assert Scorer(load_reward_model(path, spec)).share_prefixes  # the fast path, prompt run once per group
    assert_close(shared, reference)
    assert_close(engine_scores(path, share_prefixes=False)[1], reference)
    assert len(set(round(s, 3) for s in reference)) > 3  # the scores do differ: the test can fail


def test_unpacked_path_matches_transformers(tmp_path):
    """Classifiers off the packed path (other heads, encoders, remote code) run their own forward, padded."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.foreign_rm import PooledEncoder, WholeModelRewardModel

    path = make_hf_rm(tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    whole = WholeModelRewardModel(model, tokenizer, lambda n: PooledEncoder(tokenizer, 2, n), None, 2)
    scorer = Scorer(whole, precision="fp32")
    assert not scorer.share_prefixes
    assert_close(scorer.score(ITEMS, max_tokens_per_batch=4096), transformers_scores(path))


def test_hf_pooling_skips_trailing_pad_tokens(tmp_path):
    """A template that ends each turn in the pad token (pad == eos here): transformers pools at the token
    before it, and so must the packed path."""
    template = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                "+ '<|im_end|>' }}{% endfor %}")
    path = make_hf_rm(tmp_path / "hf", chat_template=template)
    from engine.foreign_rm import PooledEncoder
    from transformers import AutoTokenizer

    encoder = PooledEncoder(AutoTokenizer.from_pretrained(path), pad_token_id=2, max_length=512)
    assert encoder.pooled([5, 6, 2, 2]) == [5, 6] and encoder.pooled([2, 2]) == [2] and encoder.pooled([5]) == [5]
    assert all(ids[-1] != 2 for ids in encoder.encode_many(ITEMS))
    assert_close(engine_scores(path)[1], transformers_scores(path))


def test_multi_objective_head_needs_a_label_index(tmp_path):
    path = make_hf_rm(tmp_path / "multi", num_labels=3)
    with pytest.raises(EngineError, match="multi-objective head .3 outputs.*--label-index"):
        inspect_reward_model(path)
    with pytest.raises(EngineError, match="outside the head's outputs"):
        inspect_reward_model(path, label_index=3)
    spec, ours = engine_scores(path, label_index=2)
    assert spec.label_index == 2
    assert_close(ours, transformers_scores(path, label=2))
    assert max(abs(a - b) for a, b in zip(ours, transformers_scores(path, label=0))) > 1e-2


def test_trl_reward_trainer_output_matches_transformers(tmp_path, tiny_model_dir):
    path = make_trl_rm(tmp_path / "trl", tiny_model_dir)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config.get("reward_token_id") is None
    spec, ours = engine_scores(path)
    assert spec.format == "hf"
    assert_close(ours, transformers_scores(path))


@torch.no_grad()
def openrlhf_reference(path, normalize=True, head=None):
    """OpenRLHF's RewardModel.forward re-done by hand: left-padded batch, position ids from the mask,
    the value at the last mask position, then (r - mean) / std."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    state = load_file(path / "model.safetensors")
    decoder = LlamaModel(config).eval()
    decoder.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    head = state[f"{head or config.value_head_prefix}.weight"]
    rows = []
    for prompt, reply in CONVERSATIONS:
        text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}],
                                             tokenize=False).rstrip("\n")
        if not text.endswith(tokenizer.eos_token):
            text += " " + tokenizer.eos_token
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    position_ids = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    hidden = decoder(ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
    values = (hidden @ head.T).squeeze(-1)
    eos = mask.shape[1] - 1 - mask.fliplr().argmax(dim=1, keepdim=True)
    reward = values.gather(1, eos).squeeze(1)
    if normalize:
        reward = (reward - config.mean) / config.std
    return reward.tolist()


@pytest.mark.parametrize("normalize", [True, False])
def test_openrlhf_matches_its_pooling_and_normalisation(tmp_path, normalize):
    path = make_openrlhf_rm(tmp_path / "orl", normalize=normalize)
    spec, ours = engine_scores(path)
    assert (spec.format, spec.pooling, spec.value_head) == ("openrlhf", "last-token", "score")
    assert spec.normalize == ((0.7, 2.5) if normalize else None)
    assert_close(ours, openrlhf_reference(path, normalize))


def test_openrlhf_old_value_head_name_is_found(tmp_path):
    path = make_openrlhf_rm(tmp_path / "old", head="value_head", normalize=False)
    config = json.loads((path / "config.json").read_text())
    del config["value_head_prefix"]  # checkpoints from before the option existed
    (path / "config.json").write_text(json.dumps(config))
    spec, ours = engine_scores(path)
    assert spec.value_head == "value_head"
    assert_close(ours, openrlhf_reference(path, normalize=False, head="value_head"))


def test_internlm2_remote_code_only_when_trusted(tmp_path):
    path = make_internlm2_rm(tmp_path / "ilm")
    with pytest.raises(EngineError, match="--trust-remote-code"):
        inspect_reward_model(path)
    spec = inspect_reward_model(path, trust_remote_code=True)
    with pytest.raises(EngineError, match="--trust-remote-code"):
        load_reward_model(path, spec)
    spec, ours = engine_scores(path, trust_remote_code=True)
    assert (spec.format, spec.reward_token_id) == ("internlm2", INTERNLM2_REWARD_TOKEN_ID)
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
    reference = []
    with torch.no_grad():  # XTuner's get_score: template, tokenize, append the reward token
        for prompt, reply in CONVERSATIONS:
            text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}], tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [INTERNLM2_REWARD_TOKEN_ID]
            ids = torch.tensor([ids])
            reference.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0].item())
    assert_close(ours, reference)


def test_refusals(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="holds no model"):
        inspect_reward_model(tmp_path / "empty")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text('{"architectures": ["LlamaForSequenceClassification"]}')
    with pytest.raises(EngineError, match="no model weights"):
        inspect_reward_model(tmp_path / "config-only")
    with pytest.raises(EngineError, match="LlamaForCausalLM.*no scoring head"):
        inspect_reward_model(tiny_model_dir)

    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64))
    encoder.save_pretrained(tmp_path / "bert")
    with pytest.raises(EngineError, match="BertModel.*no scoring head"):
        inspect_reward_model(tmp_path / "bert")

    path = make_hf_rm(tmp_path / "mismatch")
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] = 48  # the saved MLP weights are 64 wide
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineError, match="do not match its config.*mlp"):
        inspect_reward_model(path)
    config["intermediate_size"], config["num_hidden_layers"] = 64, 3  # a layer the weights lack
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineError, match="do not match its config: missing model.layers.2"):
        inspect_reward_model(path)
    with pytest.raises(EngineError, match="unknown reward-model format"):
        inspect_reward_model(tmp_path / "mismatch", fmt="onnx")
