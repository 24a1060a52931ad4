import pytest

from engine.data import SamplingParams
from tests.processes import kill_when_printed, python, stall_after_insert
from tests.workbench.conftest import table_counts, write_jsonl
from workbench.ingest.importer import import_files
from workbench.generate.sampling import sample_responses
from workbench.generate.selection import PromptSelection
from workbench.store import queries

PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=6, seed=7)


@pytest.fixture
def prompts(store, tmp_path):
    records = [{"prompt": f"Prompt number {i}: say something."} for i in range(5)]
    import_files(store, [write_jsonl(tmp_path / "prompts.jsonl", records)], source="demo", progress=False)
    return store


def _generated(store):
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT prompt_id, sample_index, text, n_tokens, finish_reason, seed, gen_time_s, run_id,
                   flag_truncated, flag_repetition, flag_near_duplicate_of
            FROM responses WHERE origin = 'generated' ORDER BY prompt_id, sample_index""")


def test_sample_stores_n_per_prompt_with_provenance_and_flags(prompts, tiny_model_dir):
    result = sample_responses(prompts, str(tiny_model_dir), 3, params=PARAMS, batch_size=4, progress=False)
    assert (result.prompts, result.generated, result.total) == (5, 15, 15)
    rows = _generated(prompts)
    assert len(rows) == 15
    assert {(r["sample_index"]) for r in rows} == {0, 1, 2}
    assert all(r["finish_reason"] in ("stop", "length") and r["n_tokens"] <= 6 for r in rows)
    assert all(r["flag_truncated"] == (r["finish_reason"] == "length") for r in rows)
    assert all(r["flag_repetition"] is not None for r in rows)
    assert len({r["seed"] for r in rows}) == 15
    with prompts.connect() as con:
        run = queries.get_run(con, result.run_id)
    assert run["kind"] == "generation" and run["status"] == "completed"
    assert '"fingerprint"' in run["config"] and '"max_new_tokens": 6' in run["config"]

    again = sample_responses(prompts, str(tiny_model_dir), 3, params=PARAMS, batch_size=4, progress=False)
    assert (again.run_id, again.generated, again.existing) == (result.run_id, 0, 15)
    assert _generated(prompts) == rows


def test_samples_do_not_depend_on_batching(prompts, tiny_model_dir, tmp_path):
    sample_responses(prompts, str(tiny_model_dir), 2, params=PARAMS, batch_size=10, progress=False)
    other = type(prompts)(tmp_path / "other.duckdb")
    import_files(other, [write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Prompt number {i}: say something."}
                                                            for i in range(5)])], source="demo", progress=False)
    sample_responses(other, str(tiny_model_dir), 2, params=PARAMS, batch_size=1, progress=False)
    assert [r["text"] for r in _generated(prompts)] == [r["text"] for r in _generated(other)]


def test_selection_limits_the_prompts(prompts, tiny_model_dir):
    result = sample_responses(prompts, str(tiny_model_dir), 2, params=PARAMS, selection=PromptSelection(limit=2),
                              progress=False)
    assert (result.prompts, result.total) == (2, 4)


_SAMPLE = """
from cli import main
sys.argv = ["workbench", "--db", sys.argv[1], "-q", "sample", "--policy", sys.argv[2], "--n", "3",
            "--max-new-tokens", "6", "--temperature", "1.0", "--top-p", "1.0", "--seed", "7", "--batch-size", "3"]
main()
"""


def test_sigkill_mid_run_then_the_same_command_completes_without_duplicates(prompts, tiny_model_dir):
    # stop inside the second batch's transaction: two batches generated, one committed
    kill_when_printed(python(stall_after_insert("responses", 2, _SAMPLE), str(prompts.path), str(tiny_model_dir)))
    partial = _generated(prompts)
    assert len(partial) == 3  # the first batch survived, the second was rolled back
    result = sample_responses(prompts, str(tiny_model_dir), 3, params=PARAMS, batch_size=3, progress=False)
    rows = _generated(prompts)
    assert (result.generated, len(rows)) == (12, 15)
    assert len({(r["prompt_id"], r["sample_index"]) for r in rows}) == 15
    # the resumed run made the same samples an uninterrupted run makes
    fresh = type(prompts)(prompts.path.parent / "fresh.duckdb")
    import_files(fresh, [write_jsonl(prompts.path.parent / "p2.jsonl",
                                     [{"prompt": f"Prompt number {i}: say something."} for i in range(5)])],
                 source="demo", progress=False)
    sample_responses(fresh, str(tiny_model_dir), 3, params=PARAMS, batch_size=3, progress=False)
    assert [r["text"] for r in _generated(fresh)] == [r["text"] for r in rows]
    assert table_counts(prompts)["responses"] == 15
