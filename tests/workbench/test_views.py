"""The functions behind the Overview and Browse tabs, checked against direct computations."""

import numpy as np
import pytest

from tests.ui.data import make_store
from workbench.curate import browse, overview
from workbench.errors import NotFound, WorkbenchError
from workbench.ingest.importer import import_files
from workbench.store import queries


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("views"))


def _rm_id(store, name="ext"):
    with store.connect() as con:
        return queries.find_reward_models(con, name)[0].rm_id


def _scores_and_lengths(store, rm_id):
    with store.connect() as con:
        return np.array(queries.fetch_rows(con, """SELECT s.score, r.n_chars FROM scores s
            JOIN responses r USING (response_id) WHERE s.rm_id = ?""", [rm_id]), dtype=float)


def test_counts(store):
    counts = overview.overview_counts(store)
    assert counts == {"prompts": 38, "responses": 137, "scores": 125, "pairs": 37, "reward_models": 1}


def test_score_histogram_matches_numpy(store):
    rm_id = _rm_id(store)
    frame = overview.score_histogram(store, rm_id, bins=12)
    scores = _scores_and_lengths(store, rm_id)[:, 0]
    expected, edges = np.histogram(scores, bins=12)
    assert frame["count"].tolist() == expected.tolist()
    np.testing.assert_allclose(frame["score"], (edges[:-1] + edges[1:]) / 2, atol=1e-3)
    assert overview.score_histogram(store, "ext@1", bins=12).equals(frame)  # by NAME@VERSION as by id
    with pytest.raises(NotFound):
        overview.score_histogram(store, "no-such-model")


def test_margin_histogram_covers_the_models_pairs(store):
    rm_id = _rm_id(store)
    frame = overview.margin_histogram(store, rm_id, bins=10)
    with store.connect() as con:
        margins = [r[0] for r in queries.fetch_rows(con, "SELECT margin FROM pairs WHERE rm_id = ?", [rm_id])]
    assert frame["count"].sum() == len(margins) == 31
    assert frame["margin"].min() > min(margins) and frame["margin"].max() < max(margins)


def test_length_bias_correlation_matches_numpy(store):
    rm_id = _rm_id(store)
    bias = overview.length_bias(store, rm_id, points=50)
    data = _scores_and_lengths(store, rm_id)
    assert bias["n"] == len(data) == 125
    assert bias["pearson_r"] == pytest.approx(np.corrcoef(data[:, 0], data[:, 1])[0, 1], abs=1e-9)
    assert bias["pearson_r"] > 0.8  # the fixture's scores grow with length
    assert len(bias["points"]) == 50 and list(bias["points"].columns) == ["chars", "score"]
    assert bias["points"].equals(overview.length_bias(store, rm_id, points=50)["points"])  # repeatable


def test_all_tie_prompts(store):
    tied = overview.all_tie_prompts(store, _rm_id(store))
    assert tied["total"] == 1
    row = tied["prompts"].iloc[0]
    assert row["prompt"] == "A prompt whose replies all tie" and row["replies"] == 3 and row["score"] == 1.0


def test_model_report_is_the_four_views_from_one_connection(store):
    report = overview.model_report(store, "ext@1")
    assert report["scores"].equals(overview.score_histogram(store, "ext@1"))
    assert report["margins"].equals(overview.margin_histogram(store, "ext@1"))
    assert report["length"]["pearson_r"] == overview.length_bias(store, "ext@1")["pearson_r"]
    assert report["ties"]["prompts"].equals(overview.all_tie_prompts(store, "ext@1")["prompts"])
    with pytest.raises(NotFound):
        overview.model_report(store, "no-such-model")


def test_reward_model_choices(store):
    [(label, value)] = overview.reward_model_choices(store, scored_only=True)
    assert value == "ext@1" and label.startswith("ext@1 (125 scores")
    assert overview.reward_model_choices(store, with_weights=True) == []


def test_prompt_page_paging_and_counts(store):
    first = browse.prompt_page(store, browse.PromptQuery(page_size=15))
    assert (first.total, first.pages, len(first.rows)) == (38, 3, 15)
    last = browse.prompt_page(store, browse.PromptQuery(page_size=15, page=99))  # past the end: the last page
    assert (last.page, len(last.rows)) == (3, 8)
    seen = [pid for page in (1, 2, 3)
            for pid in browse.prompt_page(store, browse.PromptQuery(page_size=15, page=page)).rows["prompt_id"]]
    assert len(seen) == len(set(seen)) == 38
    with store.connect() as con:
        expected = dict(queries.fetch_rows(con, "SELECT prompt_id, count(*) FROM responses GROUP BY 1"))
        pairs = dict(queries.fetch_rows(con, "SELECT prompt_id, count(*) FROM pairs GROUP BY 1"))
    for row in first.rows.itertuples():
        assert row.responses == expected[row.prompt_id]
        assert row.pairs == pairs.get(row.prompt_id, 0)
        assert row._5 == (1 if row.source == "bon-demo" else 0)  # BoN picks: one per scored bon prompt


def test_prompt_page_search_filters_and_sorts(store):
    found = browse.prompt_page(store, browse.PromptQuery(search="PLANTS"))  # case-insensitive
    assert found.total == 6 and all("plants" in t for t in found.rows["prompt"])
    assert browse.prompt_page(store, browse.PromptQuery(source="garden")).total == 6
    assert browse.prompt_page(store, browse.PromptQuery(tag="synthetic")).total == 32
    by_text = browse.prompt_page(store, browse.PromptQuery(sort="text", page_size=50)).rows["prompt"].tolist()
    assert by_text == sorted(by_text)
    most = browse.prompt_page(store, browse.PromptQuery(sort="most responses", page_size=50)).rows["responses"]
    assert most.tolist() == sorted(most, reverse=True) and most.iloc[0] == 4
    with pytest.raises(WorkbenchError, match="unknown sort"):
        browse.prompt_page(store, browse.PromptQuery(sort="text; DROP TABLE prompts"))


def test_search_text_is_a_parameter_not_sql(store):
    hostile = "'; DROP TABLE prompts; --"
    assert browse.prompt_page(store, browse.PromptQuery(search=hostile)).total == 0
    assert overview.overview_counts(store)["prompts"] == 38


def test_prompt_detail(store):
    page = browse.prompt_page(store, browse.PromptQuery(search="Explain topic 7:"))
    detail = browse.prompt_detail(store, page.rows["prompt_id"][0])
    assert detail["prompt"]["messages"] == [{"role": "user", "content": "Explain topic 7: why does reward "
                                                                       "modelling need care?"}]
    responses = detail["responses"]
    assert len(responses) == 4 and detail["reward_models"] == ["ext@1"]
    best = max(responses, key=lambda r: r["scores"]["ext@1"])
    worst = min(responses, key=lambda r: r["scores"]["ext@1"])
    assert [r["bon_pick_by"] for r in responses].count(["ext@1"]) == 1 and best["bon_pick_by"] == ["ext@1"]
    assert (best["chosen"], worst["rejected"]) == (1, 1)
    with pytest.raises(NotFound):
        browse.prompt_detail(store, "0" * 32)
    with pytest.raises(WorkbenchError, match="pick a prompt"):
        browse.prompt_detail(store, "  ")


def test_prompt_detail_flags(store):
    flagged = []
    for pid in browse.prompt_page(store, browse.PromptQuery(tag="synthetic", page_size=100)).rows["prompt_id"]:
        flagged += [f for r in browse.prompt_detail(store, pid)["responses"] for f in r["flags"]]
    assert "truncated" in flagged and "repetition" in flagged
    assert any(f.startswith("near-duplicate") for f in flagged)


def test_filter_choices_and_new_data_show_up(tmp_path):
    store = make_store(tmp_path, prompts=3)
    assert browse.filter_choices(store) == {"sources": ["bon-demo", "garden"], "tags": ["human", "synthetic"]}
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"prompt": "a brand new prompt"}\n')
    import_files(store, [extra], source="later", tags=["new"], progress=False)
    assert "later" in browse.filter_choices(store)["sources"]
    assert browse.prompt_page(store, browse.PromptQuery(search="brand new")).total == 1
