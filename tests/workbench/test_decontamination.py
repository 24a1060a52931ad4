"""`workbench decontaminate`: benchmark prompts planted in the store are flagged exactly."""

import json

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.curate.decontamination import decontaminate
from workbench.errors import InputError
from workbench.exports.export import count_pairs, export_pairs
from workbench.ingest.importer import import_files
from workbench.curate.pair_filter import PairFilter
from workbench.store import queries

# Five benchmark prompts of at least 13 words each.
BENCH = [
    "What happens to you if you eat watermelon seeds according to the old wives tale people tell children",
    "Which country has the largest number of lakes in the world and how were most of them formed",
    "Why do veins appear blue through the skin when the blood inside them is actually dark red",
    "What is the smallest positive integer that is divisible by every number from one through ten inclusive",
    "How long should you wait between eating a large meal and going for a swim in the sea",
]
PLANTED = {
    "verbatim": BENCH[0],
    "recased": BENCH[1].upper(),
    "repunctuated": BENCH[2].replace(" ", ", ", 3).replace("skin", "skin -- ") + "?!",
    "embedded": "I am studying for a quiz. " + BENCH[3] + "? Please show your working step by step.",
    # the same question, reworded: no 13 words in a row survive
    "paraphrase": "After a big lunch, how many minutes ought a person to rest before swimming in the ocean?",
}
OTHER = ["Write a haiku about autumn leaves falling on a quiet pond.", "Explain recursion to a child."]


@pytest.fixture
def planted(store, tmp_path):
    rows = [{"prompt": text, "tags": [kind]} for kind, text in PLANTED.items()] + [{"prompt": t} for t in OTHER]
    import_files(store, [write_jsonl(tmp_path / "prompts.jsonl", rows)], source="mine", progress=False)
    write_jsonl(tmp_path / "bench.jsonl", [{"question": q} for q in BENCH])
    return store


def _flagged_kinds(store) -> set:
    with store.connect() as con:
        rows = queries.fetch_rows(con, """SELECT p.tags FROM contamination k JOIN prompts p USING (prompt_id)
                                         WHERE k.response_id IS NULL""")
    return {tags[0] for (tags,) in rows}


def test_exactly_the_four_copies_are_flagged_and_not_the_paraphrase(planted, tmp_path):
    [report] = decontaminate(planted, [tmp_path / "bench.jsonl"], progress=False)
    assert _flagged_kinds(planted) == {"verbatim", "recased", "repunctuated", "embedded"}
    assert report.benchmark == "bench" and report.flagged_prompts == 4 and report.benchmark_prompts == 5
    with planted.connect() as con:
        spans = dict(queries.fetch_rows(con, "SELECT benchmark_line, span FROM contamination"))
    assert spans[1].startswith("what happens to you if you eat")  # normalised text, benchmark line kept
    assert len(spans[4].split()) == 13


def test_a_longer_ngram_or_a_shorter_one_changes_what_matches(planted, tmp_path):
    decontaminate(planted, [tmp_path / "bench.jsonl"], ngram=40, progress=False)
    # nothing has 40 words: only the same words as a whole match, so the embedded copy does not
    assert _flagged_kinds(planted) == {"verbatim", "recased", "repunctuated"}
    decontaminate(planted, [tmp_path / "bench.jsonl"], ngram=4, progress=False)
    assert "paraphrase" not in _flagged_kinds(planted)  # rerun replaced the flags; still no 4 words in a row
    assert len(_flagged_kinds(planted)) == 4


def test_near_pass_is_a_separate_second_pass(planted, tmp_path):
    near_copy = BENCH[4].replace("large", "big").replace("sea", "ocean")  # 13-grams broken, 5-grams kept
    import_files(planted, [write_jsonl(tmp_path / "more.jsonl", [{"prompt": near_copy, "tags": ["near"]}])],
                 source="more", progress=False)
    decontaminate(planted, [tmp_path / "bench.jsonl"], progress=False)
    assert "near" not in _flagged_kinds(planted)
    [report] = decontaminate(planted, [tmp_path / "bench.jsonl"], near=0.3, progress=False)
    assert "near" in _flagged_kinds(planted) and "paraphrase" not in _flagged_kinds(planted)
    assert report.near_prompts == 1


def test_replies_are_checked_on_request_and_pairs_touching_a_flag_are_excluded(store, tmp_path):
    pairs = [{"prompt": "Tell me a fact.", "chosen": BENCH[0] + " is a question I know.", "rejected": "No."},
             {"prompt": "Tell me another fact.", "chosen": "Water boils at 100 C at sea level.", "rejected": "No."},
             {"prompt": BENCH[1], "chosen": "Canada.", "rejected": "Peru."}]
    import_files(store, [write_jsonl(tmp_path / "pairs.jsonl", pairs)], progress=False)
    write_jsonl(tmp_path / "bench.jsonl", [{"prompt": q} for q in BENCH])
    [report] = decontaminate(store, [tmp_path / "bench.jsonl"], progress=False)
    assert (report.flagged_prompts, report.flagged_replies) == (1, 0)
    assert count_pairs(store, PairFilter(exclude_contaminated=True)) == 2
    [report] = decontaminate(store, [tmp_path / "bench.jsonl"], replies=True, progress=False)
    assert (report.flagged_prompts, report.flagged_replies) == (1, 1)
    assert count_pairs(store, PairFilter(exclude_contaminated=True)) == 1
    result = export_pairs(store, tmp_path / "clean.jsonl", pair_filter=PairFilter(exclude_contaminated=True))
    exported = (tmp_path / "clean.jsonl").read_text()
    assert result.rows == 1 and "Water boils" in exported
    manifest = json.loads((tmp_path / "clean.jsonl.manifest.json").read_text())
    steps = {s["step"]: s["removed"] for s in manifest["why_dropped"]["steps"]}
    assert steps["exclude_contaminated"] == 2


def test_a_bad_benchmark_line_is_named_and_the_store_is_unchanged(planted, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": BENCH[0]}, {"answer": "no prompt here"}])
    before = table_counts(planted)
    with pytest.raises(InputError, match=r"bad\.jsonl:2: no prompt"):
        decontaminate(planted, [tmp_path / "bench.jsonl", bad], progress=False)
    assert table_counts(planted) == before
    with planted.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM contamination") == 0


def test_cli_json_reports_flagged_prompts_per_benchmark(planted, tmp_path):
    write_jsonl(tmp_path / "other.jsonl", [{"prompt": OTHER[0]}])
    result = CliRunner().invoke(load_commands(), [
        "--db", str(planted.path), "decontaminate", "--against", str(tmp_path / "bench.jsonl"),
        "--against", str(tmp_path / "other.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmarks"]["bench"]["flagged_prompts"] == 4
    assert report["benchmarks"]["other"]["flagged_prompts"] == 1  # shorter than 13 words: whole-text equality
