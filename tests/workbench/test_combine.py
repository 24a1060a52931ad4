import json

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from workbench.curate.combine import build_combined_pairs
from workbench.errors import WorkbenchError
from workbench.exports.export import count_pairs, export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.ingest.importer import import_files
from workbench.store import queries

TEXTS = {"p1": ["alpha", "bravo longer", "c"], "p2": ["delta long", "e", "f"]}
# z-scores by hand: A = 5 + 2 * zA and B = 100 * zB, both with mean-0, std-1 z over the six replies.
A = {"p1": [7.0, 3.0, 7.0], "p2": [3.0, 7.0, 3.0]}        # zA = [1, -1, 1], [-1, 1, -1]
B = {"p1": [100.0, 100.0, -100.0], "p2": [-100.0, 100.0, -100.0]}  # zB = [1, 1, -1], [-1, 1, -1]
# mean-z: p1 alpha 1, bravo 0, c 0; p2 delta -1, e 1, f -1


@pytest.fixture
def two_models(store, tmp_path):
    for name, scores in (("a", A), ("b", B)):
        rows = [{"prompt": p, "responses": TEXTS[p], "scores": scores[p]} for p in TEXTS]
        import_files(store, [write_jsonl(tmp_path / f"{name}.jsonl", rows)], source="bon", score_name=name,
                     progress=False)
    return store


def _pairs(store, labeler_id):
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT p.text AS prompt, c.text AS chosen, r.text AS rejected, pr.margin, pr.params, pr.strategy
            FROM pairs pr JOIN prompts p USING (prompt_id) JOIN responses c ON c.response_id = pr.chosen_id
            JOIN responses r ON r.response_id = pr.rejected_id WHERE pr.rm_id = ? ORDER BY 1, 2, 3""", [labeler_id])


def _labeler(store, name):
    with store.connect() as con:
        return queries.lookup_reward_model(con, name)


def test_mean_z_best_vs_worst_by_hand(two_models):
    result = build_combined_pairs(two_models, ["b", "a"], "mean-z", "best-vs-worst", progress=False)
    assert result.rm == "mean-z(a,b)@1" and result.candidates == result.new_pairs == 2
    pairs = _pairs(two_models, _labeler(two_models, "mean-z(a,b)").rm_id)
    # ties at the bottom: the longer reply is rejected (the single-model tie rule)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p1", "alpha", "bravo longer"),
                                                                          ("p2", "e", "delta long")]
    assert [p["margin"] for p in pairs] == pytest.approx([1.0, 2.0])
    params = json.loads(pairs[0]["params"])
    assert params["combine"] == "mean-z" and [m["name"] for m in params["members"]] == ["a", "b"]
    # the margin is on the mean-z score; the same models in another order add nothing
    again = build_combined_pairs(two_models, ["a", "b"], "mean-z", "best-vs-worst", min_margins=[1.5], progress=False)
    assert again.candidates == 1 and again.new_pairs == 1  # another margin: another spec, so a new pair id
    assert build_combined_pairs(two_models, ["a", "b"], "mean-z", "best-vs-worst", progress=False).new_pairs == 0


def test_agree_keeps_only_pairs_every_model_orders_the_same_way(two_models):
    result = build_combined_pairs(two_models, ["a", "b"], "agree", "all-above-margin", progress=False)
    # mean-z finds 4 pairs; in p1, A ties alpha/c and B ties alpha/bravo, so only p2's two survive
    assert result.before_agreement == 4 and result.candidates == result.new_pairs == 2
    pairs = _pairs(two_models, _labeler(two_models, "agree(a,b)").rm_id)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("e", "delta long"), ("e", "f")]
    members = json.loads(pairs[0]["params"])["members"]
    assert [(m["name"], m["min_margin"]) for m in members] == [("a", 0.0), ("b", 0.0)]
    # per-model margins: A separates p2's pairs by 4, so 5 drops them; one value applies to both models
    assert build_combined_pairs(two_models, ["a", "b"], "agree", "best-vs-worst", min_margins=[5, 0],
                                progress=False).candidates == 0
    assert build_combined_pairs(two_models, ["a", "b"], "agree", "best-vs-worst", min_margins=[4],
                                progress=False).candidates == 1


def test_export_filters_and_manifest_name_the_combination(two_models, tmp_path):
    build_combined_pairs(two_models, ["a", "b"], "mean-z", "best-vs-worst", progress=False)
    assert count_pairs(two_models, PairFilter(rm="mean-z(a,b)")) == 2
    assert count_pairs(two_models, PairFilter(rm="mean-z(a,b)@1")) == 2
    assert count_pairs(two_models, PairFilter(rm="a")) == 0  # --rm A: pairs A labelled on its own
    out = tmp_path / "c.jsonl"
    export_pairs(two_models, out, pair_filter=PairFilter(rm="mean-z(a,b)"), with_provenance=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["labeler"] for r in rows} == {"mean-z(a,b)@1"}
    [model] = json.loads((tmp_path / "c.jsonl.manifest.json").read_text())["reward_models"]
    assert model["combine"] == "mean-z" and [m["name"] for m in model["members"]] == ["a", "b"]
    with pytest.raises(WorkbenchError, match="no scores of its own"):
        export_pairs(two_models, tmp_path / "s.jsonl", schema="sft", pair_filter=PairFilter(rm="mean-z(a,b)"))


def test_refusals(two_models, tmp_path):
    with pytest.raises(WorkbenchError, match="at least two different"):
        build_combined_pairs(two_models, ["a", "a"], "mean-z", "best-vs-worst", progress=False)
    with pytest.raises(WorkbenchError, match="one --min-margin for every model or one per --rm"):
        build_combined_pairs(two_models, ["a", "b"], "agree", "best-vs-worst", min_margins=[1, 2, 3], progress=False)
    with pytest.raises(WorkbenchError, match="mean-z takes one --min-margin"):
        build_combined_pairs(two_models, ["a", "b"], "mean-z", "best-vs-worst", min_margins=[1, 2], progress=False)
    flat = [{"prompt": "p9", "responses": ["x", "y"], "scores": [1.0, 1.0]}]
    import_files(two_models, [write_jsonl(tmp_path / "f.jsonl", flat)], source="flat", score_name="flat",
                 progress=False)
    import_files(two_models, [write_jsonl(tmp_path / "g.jsonl", [{**flat[0], "scores": [1.0, 2.0]}])],
                 source="flat", score_name="other", progress=False)
    with pytest.raises(WorkbenchError, match="flat@1 gives every selected response the same score"):
        build_combined_pairs(two_models, ["flat", "other"], "mean-z", "best-vs-worst", source="flat", progress=False)
    with pytest.raises(WorkbenchError, match="no selected response is scored by all"):
        build_combined_pairs(two_models, ["a", "flat"], "mean-z", "best-vs-worst", progress=False)
    with two_models.connect() as con:  # the refusals registered no combined labeler
        assert queries.fetch_value(con, "SELECT count(*) FROM reward_models WHERE name LIKE 'mean-z(%'") == 0


def test_cli_combine(two_models):
    from cli import load_commands

    base = ["--db", str(two_models.path), "-q", "pairs", "build"]
    runner = CliRunner()
    result = runner.invoke(load_commands(), [*base, "--rm", "a", "--rm", "b", "--combine", "agree",
                                             "--min-margin", "1", "--min-margin", "50", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rm"] == "agree(a,b)@1" and summary["candidates"] == 1 and summary["members"] == ["a@1", "b@1"]
    result = runner.invoke(load_commands(), [*base, "--rm", "a", "--rm", "b"])
    assert result.exit_code != 0 and "need --combine" in result.output
    result = runner.invoke(load_commands(), [*base, "--rm", "a", "--min-margin", "1"])
    assert result.exit_code == 0, result.output
