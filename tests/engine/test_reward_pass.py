"""The one no-grad pass (`engine.reward_pass`) over each kind of reward model agrees with the
model's own whole-conversation forward: packed rows, shared prompts and unit order change nothing."""

from __future__ import annotations

import pytest
import torch

from engine.data import ScoringItem
from engine.errors import EngineError
from engine.packing import groups_by_token_prefix, prefix_units
from engine.reward_model import RewardModel
from engine.reward_pass import ScoringModel, pair_units, reward_token_pass, single_units
from tests.engine.helpers import sharpen_value_head
from tests.rm_builders import CONVERSATIONS, make_hf_rm

ITEMS = [ScoringItem(p, r) for p, r in CONVERSATIONS]


@torch.no_grad()
def whole_model_scores(model, sequences) -> list[float]:
    """Each conversation alone through the HF classifier's own forward (its stock pooling)."""
    return [model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in sequences]


def workbench_rm(tiny_dir, tmp_path):
    rm = sharpen_value_head(RewardModel.from_base(tiny_dir))
    return rm, rm.seqcls


def packed_foreign_rm(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from engine.foreign_rm import load_reward_model
    from engine.rm_formats import inspect_reward_model

    path = make_hf_rm(tmp_path / "hf")
    return load_reward_model(path, inspect_reward_model(path)), AutoModelForSequenceClassification.from_pretrained(path)


def whole_foreign_rm(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.foreign_rm import PooledEncoder, WholeModelRewardModel

    path = make_hf_rm(tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad = model.config.pad_token_id
    return WholeModelRewardModel(model, tokenizer, lambda n: PooledEncoder(tokenizer, pad, n), None, pad), model


@pytest.mark.parametrize("build", [workbench_rm, packed_foreign_rm, whole_foreign_rm])
def test_pass_matches_the_whole_model_forward(build, tiny_dir, tmp_path):
    rm, reference_model = build(tiny_dir, tmp_path)
    assert isinstance(rm, ScoringModel)
    sequences = rm.encoder(256).encode_many(ITEMS)
    reference = whole_model_scores(reference_model, sequences)
    units = prefix_units(groups_by_token_prefix(sequences), sequences, 160) if rm.reads_shared_prefixes \
        else single_units(sequences)
    if build is not whole_foreign_rm:
        assert rm.reads_shared_prefixes and sum(1 for prefix, _ in units if prefix) == 2  # two prompts shared
    rm.train()
    packed = reward_token_pass(rm, units, 160, "fp32")  # a small budget: several micro-batches
    assert rm.training  # the pass returns the model to the mode it found
    torch.testing.assert_close(packed, torch.tensor(reference), atol=1e-5, rtol=0)
    alone = reward_token_pass(rm, single_units(sequences), 4096, "fp32", share=False)
    torch.testing.assert_close(alone, torch.tensor(reference), atol=1e-5, rtol=0)


@pytest.mark.parametrize("build", [workbench_rm, packed_foreign_rm])
def test_pass_states_are_what_the_value_head_reads(build, tiny_dir, tmp_path):
    rm, _ = build(tiny_dir, tmp_path)
    sequences = rm.encoder(256).encode_many(ITEMS)
    pairs = [(sequences[0], sequences[1]), (sequences[3], sequences[4]), (sequences[2], sequences[5])]
    states = reward_token_pass(rm, pair_units(pairs, True), 4096, "fp32", read=rm.reward_hidden)  # (6, H)
    scores = reward_token_pass(rm, single_units([s for pair in pairs for s in pair]), 4096, "fp32", share=False)
    with torch.no_grad():
        torch.testing.assert_close(rm.value_head(states).squeeze(-1), scores, atol=1e-5, rtol=0)


def test_whole_model_refuses_shared_prefixes_and_states(tiny_dir, tmp_path):
    rm, _ = whole_foreign_rm(tiny_dir, tmp_path)
    sequences = rm.encoder(256).encode_many(ITEMS)
    with pytest.raises(EngineError, match="shared prefix"):
        reward_token_pass(rm, single_units(sequences), 4096, "fp32", share=True)
    with pytest.raises(EngineError, match="own forward"):
        reward_token_pass(rm, single_units(sequences), 4096, "fp32", read=rm.reward_hidden)
