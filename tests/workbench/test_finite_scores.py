"""Non-finite scores: refused at every entry, and ignored by pair building and export in an old store.

In DuckDB `NaN > x` is true, so before these checks a prompt scored (1, NaN, 3) gave contradictory
pairs (a > b and b > a), top-k picked the NaN reply as best, and NaN margins passed every --min-margin.
"""

import json
import math

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.curate.curation import PairIndex, curation_preview
from workbench.errors import InputError
from workbench.exports.export import count_pairs, export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.generate.finite_scores import finite_score, first_non_finite, require_finite
from workbench.ingest.importer import import_files
from workbench.curate.pairs import STRATEGIES, build_pairs
from workbench.generate.scoring import score_responses
from workbench.store import queries

TEXTS = ("one", "not a number", "three")


def _old_store_with(store, tmp_path, bad: float):
    """A store whose middle reply holds `bad`, as a store written before the entry checks could."""
    path = write_jsonl(tmp_path / "bon.jsonl", [{"prompt": "q", "responses": list(TEXTS), "scores": [1.0, 2.0, 3.0]}])
    import_files(store, [path], score_name="ext", progress=False)
    store.write(lambda con: con.execute(
        "UPDATE scores SET score = ? WHERE response_id IN (SELECT response_id FROM responses WHERE text = ?)",
        [bad, TEXTS[1]]))


def _pairs(store) -> list[dict]:
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT c.text AS chosen, r.text AS rejected, pr.score_chosen, pr.score_rejected, pr.margin
            FROM pairs pr JOIN responses c ON c.response_id = pr.chosen_id
            JOIN responses r ON r.response_id = pr.rejected_id""")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_non_finite_score_never_enters_a_pair_under_any_strategy(store, tmp_path, strategy, bad):
    _old_store_with(store, tmp_path, bad)
    build_pairs(store, "ext", strategy, k=1, progress=False)
    pairs = _pairs(store)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("three", "one")]
    assert all(math.isfinite(p["margin"]) and p["score_chosen"] > p["score_rejected"] for p in pairs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nan_margins_never_pass_min_margin(store, tmp_path, strategy):
    _old_store_with(store, tmp_path, math.nan)
    assert build_pairs(store, "ext", strategy, k=1, min_margin=100.0, progress=False).new_pairs == 0


def test_export_and_the_curation_count_skip_stored_pairs_with_non_finite_scores(store, tmp_path):
    _old_store_with(store, tmp_path, 2.0)
    build_pairs(store, "ext", "all-above-margin", progress=False)  # 3 finite pairs
    # the store then gets NaN/inf into two of its pairs (as an old version could write them)
    store.write(lambda con: con.execute("""
        UPDATE pairs SET score_chosen = 'NaN'::DOUBLE, margin = 'NaN'::DOUBLE WHERE chosen_id IN
            (SELECT response_id FROM responses WHERE text = 'not a number');
        UPDATE pairs SET score_rejected = '-inf'::DOUBLE, margin = 'inf'::DOUBLE WHERE rejected_id IN
            (SELECT response_id FROM responses WHERE text = 'not a number')"""))
    for spec in (PairFilter(), PairFilter(min_margin=0.5), PairFilter(min_score=-1e9), PairFilter(max_score=1e9)):
        assert count_pairs(store, spec) == 1, spec
    out = tmp_path / "dpo.jsonl"
    result = export_pairs(store, out, pair_filter=PairFilter(min_margin=0.0), with_scores=True)
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.rows == 1 and (row["chosen"][0]["content"], row["rejected"][0]["content"]) == ("three", "one")
    preview = curation_preview(store, PairIndex(store), PairFilter(min_margin=0.0))
    assert preview.total == 1 and preview.store_pairs == 3


def test_non_finite_bon_scores_are_refused_the_same_way_in_both_import_lanes(tmp_path):
    from tests.workbench.test_bulk_import import dump, import_both

    good = '{"prompt": "fine", "responses": ["a", "b"], "scores": [1.0, 0.0]}'
    for literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400"):
        work = tmp_path / literal
        work.mkdir()
        path = work / "in.jsonl"
        path.write_text(f'{good}\n{{"prompt": "p", "responses": ["a", "b"], "scores": [0.5, {literal}]}}\n')
        (bulk_store, _, bulk_error), (exact_store, _, exact_error) = import_both(work, [path], fmt="bon")
        assert bulk_error == exact_error, literal
        assert f"{path}:2: expected a finite number" in exact_error and "(field 'scores[1]')" in exact_error
        assert dump(bulk_store) == dump(exact_store) and not dump(exact_store)["scores"]


def test_a_nan_literal_in_a_field_bon_does_not_read_is_read_alike_by_both_lanes(tmp_path):
    from tests.workbench.test_bulk_import import dump, import_both, lanes_used

    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "q", "responses": ["b"], "scores": [2]}\n'
                    '{"prompt": "p", "responses": ["a"], "meta": [NaN, 1e400]}\n')
    (bulk_store, bulk, bulk_error), (exact_store, _, exact_error) = import_both(tmp_path, [path], fmt="bon")
    assert bulk_error is None and exact_error is None and lanes_used(bulk_store) == ["bulk"]
    assert dump(bulk_store) == dump(exact_store) and bulk.new_responses == 2


@pytest.mark.parametrize("literal", ["NaN", "1e400"])
def test_a_non_finite_score_in_a_response_object_names_its_field(store, tmp_path, literal):
    path = tmp_path / "in.jsonl"
    path.write_text(f'{{"prompt": "p", "responses": [{{"text": "a", "score": {literal}}}]}}\n')
    with pytest.raises(InputError, match=r"in.jsonl:1: expected a finite number, got (nan|inf) "
                                         r"\(field 'responses\[0\].score'\)"):
        import_files(store, [path], progress=False)


def test_the_cli_refuses_a_nan_score_in_one_line_and_leaves_the_store_unchanged(tmp_path):
    db = str(tmp_path / "t.duckdb")
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "p", "responses": ["a"], "scores": [NaN]}\n')
    result = CliRunner().invoke(load_commands(), ["--db", db, "-q", "import", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "in.jsonl:1: expected a finite number, got nan (field 'scores[0]')" in result.output


class _Scorer:
    def __init__(self, values):
        self.values = values

    def score(self, items, max_tokens_per_batch=None, progress=None):
        return self.values[:len(items)]


def test_scoring_refuses_a_non_finite_score_from_the_model_and_stores_none_of_the_batch(store, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "responses": ["a", "b"]}])
    import_files(store, [path], fmt="bon", progress=False)
    store.write(lambda con: queries.insert_reward_model(con, "rm-1", "broken", str(tmp_path), {}, None))
    before = table_counts(store)
    with pytest.raises(InputError, match=r"reward model broken@1 gave a non-finite score \(nan\) to response "):
        score_responses(store, "broken", scorer=_Scorer([0.5, math.nan]), progress=False)
    assert table_counts(store) == before | {"runs": before["runs"] + 1}  # only the failed run is recorded
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT status FROM runs WHERE kind = 'scoring'") == "failed"


def test_the_finiteness_rule():
    assert finite_score(None, "s") is None and finite_score(3, "s") == 3.0
    for bad in (math.nan, math.inf, True, "1", 10 ** 400):
        with pytest.raises(InputError, match="expected a finite number"):
            finite_score(bad, "s")
    assert first_non_finite([1, 2.5, -0.0]) is None and first_non_finite([1, math.inf, math.nan]) == 1
    assert require_finite([1, 2], ["a", "b"], "x") == [1.0, 2.0]


def test_a_best_of_n_pick_is_never_a_non_finite_score(store, tmp_path):
    _old_store_with(store, tmp_path, math.nan)
    with store.connect() as con:
        rm_id = queries.fetch_value(con, "SELECT rm_id FROM reward_models")
        run_id = queries.fetch_value(con, "SELECT DISTINCT run_id FROM responses")
    assert store.write(lambda con: queries.insert_bon_picks(con, rm_id, run_id)) == 1
    with store.connect() as con:
        assert queries.fetch_rows(con, "SELECT r.text, b.score FROM bon_picks b JOIN responses r USING (response_id)") == [
            ("three", 3.0)]
