import json

import pyarrow.parquet as pq
import pytest

from tests.workbench.conftest import write_jsonl
from workbench.errors import WorkbenchError
from workbench.exports.export import count_pairs, export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.ingest.importer import import_files
from workbench.curate.pairs import build_pairs

MULTI = {"chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: good",
         "rejected": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: bad"}


@pytest.fixture
def filled(store, tmp_path):
    human = [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad {i}"} for i in range(5)]
    import_files(store, [write_jsonl(tmp_path / "human.jsonl", human)], source="human-src", progress=False)
    import_files(store, [write_jsonl(tmp_path / "hh.jsonl", [MULTI])], source="hh", progress=False)
    bon = [{"prompt": f"bon {i}", "responses": ["first", "second reply", "third"], "scores": [i, 0.0, -1.0]}
           for i in range(3)]
    import_files(store, [write_jsonl(tmp_path / "bon.jsonl", bon)], source="bon-src", score_name="ext",
                 progress=False)
    build_pairs(store, "ext", "best-vs-worst", progress=False)
    return store


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_schema_jsonl_and_manifest(filled, tmp_path):
    out = tmp_path / "dpo.jsonl"
    result = export_pairs(filled, out, pair_filter=PairFilter(label="human"))
    rows = _lines(out)
    assert result.rows == len(rows) == 6
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    manifest = json.loads((tmp_path / "dpo.jsonl.manifest.json").read_text())
    assert manifest["rows"] == 6 and manifest["filter"]["label"] == "human"
    assert manifest["labelers"] == {"human": 6}
    assert manifest["content_sha256"] == result.content_hash and manifest["store_hash"] and manifest["code_version"]


def test_same_store_same_arguments_byte_identical(filled, tmp_path):
    for fmt, name in (("jsonl", "a.jsonl"), ("parquet", "a.parquet")):
        first, second = tmp_path / f"1-{name}", tmp_path / f"2-{name}"
        export_pairs(filled, first, fmt=fmt, with_scores=True, with_provenance=True)
        export_pairs(filled, second, fmt=fmt, with_scores=True, with_provenance=True)
        assert first.read_bytes() == second.read_bytes()


def test_filters_scores_and_provenance(filled, tmp_path):
    out = tmp_path / "rm.jsonl"
    export_pairs(filled, out, pair_filter=PairFilter(rm="ext", min_margin=1.5), with_scores=True, with_provenance=True)
    rows = _lines(out)
    # margins: bon 0 -> 1.0 (0 vs -1), bon 1 -> 2.0, bon 2 -> 3.0
    assert sorted(r["margin"] for r in rows) == [2.0, 3.0]
    for r in rows:
        assert r["labeler"] == "ext@1" and r["strategy"] == "best-vs-worst" and r["source"] == "bon-src"
        assert r["score_chosen"] - r["score_rejected"] == r["margin"]
    assert count_pairs(filled, PairFilter(source="human-src")) == 5
    # both replies <= 6 chars: the hh pair ("good"/"bad") and the three bon pairs ("first"/"third")
    assert count_pairs(filled, PairFilter(max_chars=6)) == 4
    assert count_pairs(filled, PairFilter(tag="nope")) == 0
    export_pairs(filled, tmp_path / "lim.jsonl", pair_filter=PairFilter(limit=2))
    assert len(_lines(tmp_path / "lim.jsonl")) == 2


def test_trl_standard_schema_renders_multi_turn_prompts(filled, tmp_path):
    out = tmp_path / "std.jsonl"
    export_pairs(filled, out, schema="trl-standard", pair_filter=PairFilter(source="hh"))
    [row] = _lines(out)
    assert row == {"prompt": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant:", "chosen": " good",
                   "rejected": " bad"}
    export_pairs(filled, out, schema="trl-standard", pair_filter=PairFilter(source="human-src", limit=1),
                 overwrite=True)
    [row] = _lines(out)
    assert row["prompt"].startswith("question ") and row["chosen"].startswith("good answer")


def test_parquet_and_hf_datasets_round_trip(filled, tmp_path):
    from datasets import load_from_disk

    export_pairs(filled, tmp_path / "d.parquet", fmt="parquet", schema="xtuner")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.num_rows == 9 and table.column_names == ["prompt", "chosen", "rejected"]
    export_pairs(filled, tmp_path / "hf", fmt="hf")
    dataset = load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 9 and dataset[0]["chosen"][0]["role"] == "assistant"
    assert (tmp_path / "hf" / "workbench_manifest.json").exists()


def test_export_is_recorded_and_bad_arguments_are_refused(filled, tmp_path):
    from workbench.curate.stats import store_stats

    export_pairs(filled, tmp_path / "x.jsonl")
    assert store_stats(filled)["exports"] == 1
    with pytest.raises(WorkbenchError, match="--label must be"):
        export_pairs(filled, tmp_path / "y.jsonl", pair_filter=PairFilter(label="robots"))
    with pytest.raises(WorkbenchError, match="unknown schema"):
        export_pairs(filled, tmp_path / "y.jsonl", schema="csv")


def test_exported_jsonl_trains_one_step_of_trl_dpo(filled, tmp_path, tiny_model_dir):
    pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "dpo.jsonl"
    export_pairs(filled, out)
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == 9 and set(dataset.column_names) == {"prompt", "chosen", "rejected"}
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = DPOConfig(output_dir=str(tmp_path / "dpo-out"), per_device_train_batch_size=4, max_steps=1,
                     learning_rate=1e-2, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                     bf16=False, max_length=256)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    assert loss == loss and loss > 0  # finite
    changed = [n for n, p in model.named_parameters() if not p.detach().equal(before[n])]
    assert changed, "one DPO step changed no weight"


def test_readme_dpo_snippet_trains_on_an_export(filled, tmp_path, tiny_model_dir, monkeypatch):
    """The DPOTrainer snippet of docs/curation-and-export.md, as printed, on an export with score
    columns (tiny policy)."""
    pytest.importorskip("trl")
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "curation-and-export.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "DPOTrainer(" in block)
    out = tmp_path / "dpo.jsonl"
    export_pairs(filled, out, with_scores=True)
    lines = [f"DATA = {str(out)!r}" if line.startswith("DATA = ") else
             f"POLICY = {str(tiny_model_dir)!r}" if line.startswith("POLICY = ") else line
             for line in snippet.splitlines()]
    assert sum(line.startswith(("DATA = ", "POLICY = ")) for line in lines) == 2
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - the documentation's own code
    history = namespace["trainer"].state.log_history
    assert history and namespace["trainer"].state.global_step == 3  # 9 pairs, batch 4, one epoch
