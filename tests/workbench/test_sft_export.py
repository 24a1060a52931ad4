import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.exports.export import export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.ingest.importer import import_files

BON = [
    # tie at the top: the shorter reply wins
    {"prompt": "p0", "responses": ["a long reply here", "short", "middle one"], "scores": [2.0, 2.0, 1.0]},
    # tie at the top with equal lengths: the lower id wins
    {"prompt": "p1", "responses": ["aa", "bb", "c"], "scores": [1.0, 1.0, 0.0]},
    # a multi-turn prompt
    {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "p2"}], "responses": ["best two", "worst"], "scores": [0.5, -3.0]},
    # every reply below 0
    {"prompt": "p3", "responses": ["meh", "bad"], "scores": [-1.0, -2.0]},
]


@pytest.fixture
def scored(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "bon.jsonl", BON)], source="bon", score_name="ext", progress=False)
    return store


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _replies(rows):
    return {row["messages"][-2]["content"]: row["messages"][-1]["content"] for row in rows}


def _lower_id_of(prompt, texts):
    prompt_id = ids.prompt_id([{"role": "user", "content": prompt}])
    return min(texts, key=lambda t: ids.imported_response_id(prompt_id, t))


def test_best_reply_per_prompt_with_the_pair_tie_rule(scored, tmp_path):
    out = tmp_path / "sft.jsonl"
    result = export_pairs(scored, out, schema="sft", pair_filter=PairFilter(rm="ext"))
    rows = _lines(out)
    assert result.rows == len(rows) == 4
    assert _replies(rows) == {"p0": "short", "p1": _lower_id_of("p1", ["aa", "bb"]), "p2": "best two", "p3": "meh"}
    multi = next(r for r in rows if r["messages"][-2]["content"] == "p2")
    assert multi["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                 {"role": "user", "content": "p2"}, {"role": "assistant", "content": "best two"}]
    assert all(set(r) == {"messages"} for r in rows)
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["schema"] == "sft" and manifest["top"] == 1 and manifest["labelers"] == {"ext@1": 4}
    assert manifest["reward_models"][0]["name"] == "ext" and manifest["rows"] == 4


def test_top_min_score_filters_scores_and_provenance(scored, tmp_path):
    out = tmp_path / "top.jsonl"
    export_pairs(scored, out, schema="sft", pair_filter=PairFilter(rm="ext", min_score=0.0), top=2,
                 with_scores=True, with_provenance=True)
    rows = _lines(out)
    by_prompt = {}
    for row in rows:
        by_prompt.setdefault(row["messages"][-2]["content"], []).append((row["rank"], row["messages"][-1]["content"],
                                                                         row["score"]))
    assert by_prompt["p0"] == [(1, "short", 2.0), (2, "a long reply here", 2.0)]
    assert [text for _, text, _ in by_prompt["p1"]] == sorted(["aa", "bb"], key=lambda t: t != _lower_id_of("p1", ["aa", "bb"]))
    assert by_prompt["p2"] == [(1, "best two", 0.5)]    # "worst" is below --min-score
    assert "p3" not in by_prompt
    assert all(row["labeler"] == "ext@1" and row["source"] == "bon" for row in rows)
    # --max-score picks the best reply at most that score; --max-chars the best short enough one
    export_pairs(scored, out, schema="sft", pair_filter=PairFilter(rm="ext", max_score=1.5, source="bon"),
                 overwrite=True)
    assert _replies(_lines(out))["p0"] == "middle one"
    export_pairs(scored, out, schema="sft", pair_filter=PairFilter(rm="ext", min_chars=6), overwrite=True)
    assert _replies(_lines(out))["p0"] == "a long reply here"


def test_flagged_replies_are_skipped_and_output_is_reproducible(scored, tmp_path):
    with scored.connect() as con:
        con.execute("UPDATE responses SET flag_truncated = true WHERE text = 'short'")
    export_pairs(scored, tmp_path / "f.jsonl", schema="sft", pair_filter=PairFilter(rm="ext", exclude_flagged=True))
    assert _replies(_lines(tmp_path / "f.jsonl"))["p0"] == "a long reply here"
    for fmt in ("jsonl", "parquet"):
        first, second = tmp_path / f"1.{fmt}", tmp_path / f"2.{fmt}"
        for path in (first, second):
            export_pairs(scored, path, fmt=fmt, schema="sft", pair_filter=PairFilter(rm="ext"), top=3, with_scores=True)
        assert first.read_bytes() == second.read_bytes()
    assert pq.read_table(tmp_path / "1.parquet").column_names == ["messages", "score"]


def test_hf_format_and_refusals(scored, tmp_path):
    from datasets import load_from_disk

    export_pairs(scored, tmp_path / "hf", fmt="hf", schema="sft", pair_filter=PairFilter(rm="ext", limit=2))
    dataset = load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 2 and dataset[0]["messages"][-1]["role"] == "assistant"
    with pytest.raises(WorkbenchError, match="needs --rm"):
        export_pairs(scored, tmp_path / "x.jsonl", schema="sft")
    with pytest.raises(WorkbenchError, match="--min-margin select pairs"):
        export_pairs(scored, tmp_path / "x.jsonl", schema="sft", pair_filter=PairFilter(rm="ext", min_margin=1.0))
    with pytest.raises(WorkbenchError, match="--top applies to --schema sft only"):
        export_pairs(scored, tmp_path / "x.jsonl", schema="trl", top=2)
    with pytest.raises(WorkbenchError, match="--top must be at least 1"):
        export_pairs(scored, tmp_path / "x.jsonl", schema="sft", pair_filter=PairFilter(rm="ext"), top=0)
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_sft_export(scored, tmp_path):
    from cli import load_commands

    out = tmp_path / "cli.jsonl"
    runner = CliRunner()
    result = runner.invoke(load_commands(), ["--db", str(scored.path), "-q", "export", str(out), "--schema", "sft",
                                             "--rm", "ext", "--min-score", "0"])
    assert result.exit_code == 0, result.output
    assert "Wrote 3 rows" in result.output and len(_lines(out)) == 3
    result = runner.invoke(load_commands(), ["--db", str(scored.path), "-q", "export", str(out), "--schema", "sft"])
    assert result.exit_code != 0 and "needs --rm" in result.output and "Traceback" not in result.output


def test_sft_jsonl_trains_one_step_of_trl_sft(scored, tmp_path, tiny_model_dir):
    pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = tmp_path / "sft.jsonl"
    export_pairs(scored, out, schema="sft", pair_filter=PairFilter(rm="ext"))
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == 4 and dataset.column_names == ["messages"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(output_dir=str(tmp_path / "sft-out"), per_device_train_batch_size=4, max_steps=1,
                     learning_rate=1e-2, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                     bf16=False, max_length=256)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    assert loss == loss and loss > 0
    changed = [n for n, p in model.named_parameters() if not p.detach().equal(before[n])]
    assert changed, "one SFT step changed no weight"
