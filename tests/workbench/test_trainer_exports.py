"""Exports for other trainers: TRL's RewardTrainer (with margins) and KTOTrainer (unpaired rows),
each loaded and trained one step by its trainer, as the DPO export is in test_export.py."""

import json

import pytest

from tests.workbench.conftest import write_jsonl
from workbench.errors import WorkbenchError
from workbench.exports.export import export_pairs
from workbench.ingest.importer import import_files
from workbench.curate.pair_filter import PairFilter
from workbench.curate.pairs import build_pairs


@pytest.fixture
def filled(store, tmp_path):
    human = [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad {i}"} for i in range(3)]
    import_files(store, [write_jsonl(tmp_path / "human.jsonl", human)], source="human-src", progress=False)
    bon = [{"prompt": f"bon {i}", "responses": ["first", "second reply", "third"], "scores": [i + 1.0, 0.0, -1.0]}
           for i in range(4)]
    import_files(store, [write_jsonl(tmp_path / "bon.jsonl", bon)], source="bon-src", score_name="ext",
                 progress=False)
    build_pairs(store, "ext", "top-k", k=2, progress=False)  # replies appear in several pairs
    return store


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _train_one_step(trainer_cls, config_cls, model, tokenizer, dataset, tmp_path, **extra):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = config_cls(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1,
                      learning_rate=1e-2, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                      bf16=False, max_length=128, **extra)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    assert loss == loss  # finite
    assert any(not p.detach().equal(before[n]) for n, p in model.named_parameters()), "one step changed no weight"


def test_reward_schema_carries_margins_and_trains_trl_reward_trainer(filled, tmp_path, tiny_model_dir):
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    with pytest.raises(WorkbenchError, match="3 selected pairs have none"):
        export_pairs(filled, tmp_path / "all.jsonl", schema="reward")
    out = tmp_path / "rm.jsonl"
    result = export_pairs(filled, out, schema="reward", pair_filter=PairFilter(label="rm"))
    rows = _rows(out)
    assert result.rows == len(rows) == 16 - 4  # top-2 of 3 replies: 4 ordered pairs per prompt, minus ties
    assert all(set(r) == {"prompt", "chosen", "rejected", "margin"} and r["margin"] > 0 for r in rows)
    dataset = load_dataset("json", data_files=str(out), split="train")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    _train_one_step(RewardTrainer, RewardConfig, model, tokenizer, dataset, tmp_path)


def test_kto_schema_unpairs_each_reply_once_and_trains_trl_kto_trainer(filled, tmp_path, tiny_model_dir):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    out = tmp_path / "kto.jsonl"
    pairs = export_pairs(filled, tmp_path / "pairs.jsonl", pair_filter=PairFilter(label="rm")).rows
    result = export_pairs(filled, out, schema="kto", pair_filter=PairFilter(label="rm"), with_scores=True)
    rows = _rows(out)
    assert result.rows == len(rows) and pairs < len(rows) < 2 * pairs  # shared replies written once per label
    keys = [(json.dumps(r["prompt"]), r["completion"][0]["content"], r["label"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert {r["label"] for r in rows} == {True, False}
    assert all(r["completion"][0]["role"] == "assistant" and "score" in r for r in rows)
    dataset = load_dataset("json", data_files=str(out), split="train").remove_columns(["score"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    _train_one_step(KTOTrainer, KTOConfig, model, tokenizer, dataset, tmp_path)


def test_bon_schema_writes_every_scored_reply_and_imports_back(filled, tmp_path):
    from datasets import load_dataset

    from workbench.store import Store

    out = tmp_path / "all-n.jsonl"
    with pytest.raises(WorkbenchError, match="--schema bon needs --rm"):
        export_pairs(filled, out, schema="bon")
    result = export_pairs(filled, out, schema="bon", pair_filter=PairFilter(rm="ext", min_score=-0.5))
    rows = _rows(out)
    assert result.rows == len(rows) == 4
    # best first; the reply scored -1 is under --min-score; prompts in id order
    assert sorted([r["score"] for r in row["responses"]] for row in rows) == [[i + 1.0, 0.0] for i in range(4)]
    assert all(row["prompt"][0]["role"] == "user" for row in rows)
    assert len(load_dataset("json", data_files=str(out), split="train")) == 4
    fresh = Store(tmp_path / "fresh.duckdb")
    again = import_files(fresh, [out], fmt="bon", score_name="ext-again", progress=False)
    assert (again.new_prompts, again.new_responses, again.new_scores) == (4, 8, 8)
