"""`RegisteredModel`: every way of finding a registered model gives the same typed value, config parsed;
every caller that needs weights refuses a labeler without them with the one message (issue 21, item 1)."""

from __future__ import annotations

import pytest

from tests.workbench.conftest import table_counts, write_jsonl
from workbench.curate.combine import combined_labeler
from workbench.errors import WorkbenchError
from workbench.ingest.importer import import_files
from workbench.models.registered_model import RegisteredModel
from workbench.models.reward_models import register_reward_model, resolve_reward_model
from workbench.store import Store, queries


@pytest.fixture(scope="module")
def three_kinds(tmp_path_factory):
    """A reward model with weights, an imported scorer and a combination of the two (one store for the
    module: no test here changes it)."""
    from engine.reward_model import RewardModel
    from tests.tiny import make_tiny_model_dir

    tmp_path = tmp_path_factory.mktemp("registered")
    tiny_model_dir = make_tiny_model_dir(tmp_path / "tiny-model")
    store = Store(tmp_path / "test.duckdb", timeout=10)
    rows = [{"prompt": f"q{i}", "responses": [f"a{i}", f"b{i}"], "scores": [1.0, float(i)]} for i in range(3)]
    import_files(store, [write_jsonl(tmp_path / "s.jsonl", rows)], source="s", score_name="ext", progress=False)
    weights = register_reward_model(store, RewardModel.from_base(tiny_model_dir).save(tmp_path / "rm"), name="tiny")
    imported = resolve_reward_model(store, "ext")
    return store, weights, imported, combined_labeler(store, [weights, imported], "mean-z")


def test_every_lookup_gives_the_same_model_with_its_config_parsed(three_kinds):
    store, weights, imported, combined = three_kinds
    with store.connect() as con:
        for model in (weights, imported, combined):
            found = [queries.get_reward_model(con, model.rm_id), queries.lookup_reward_model(con, model.label),
                     queries.lookup_reward_model(con, model.name), queries.find_reward_models(con, model.name)[0],
                     resolve_reward_model(store, model.rm_id)]
            assert all(isinstance(f, RegisteredModel) and f == model for f in found)
            assert all(isinstance(f.config, dict) for f in found)
        assert sorted(m.label for m in queries.list_reward_models(con)) == sorted(
            m.label for m in (weights, imported, combined))
        assert queries.score_counts(con) == {imported.rm_id: 6}
    assert weights.config["fingerprint"].startswith(weights.rm_id)


def test_kinds_and_what_they_offer(three_kinds):
    _, weights, imported, combined = three_kinds
    assert [m.kind for m in (weights, imported, combined)] == ["weights", "imported", "combined"]
    assert [m.has_weights for m in (weights, imported, combined)] == [True, False, False]
    assert weights.label == "tiny@1" and weights.as_reference() == {"rm_id": weights.rm_id, "name": "tiny",
                                                                    "version": 1}
    assert weights.reward_format().format == "workbench" and weights.format_fields()["format"] == "workbench"
    assert combined.label == "mean-z(ext,tiny)@1" and combined.combination["members"] == [
        imported.as_reference(), weights.as_reference()]
    manifest = combined.as_manifest()
    assert (manifest["format"], manifest["combine"], manifest["path"]) == ("combined", "mean-z", None)
    assert imported.as_manifest()["format"] == "imported" and weights.as_manifest()["path"] == weights.path
    assert RegisteredModel("x", "judge", 1, config={"kind": "llm-judge"}).kind == "llm-judge"


def _score(store, rm):
    from workbench.generate.scoring import score_responses

    score_responses(store, rm, progress=False)


def _serve(store, rm):
    from workbench.serving.config import ServeConfig
    from workbench.serving.server import RewardServer

    RewardServer(store, rm, ServeConfig(port=0))


def _reward_function(store, rm):
    from workbench.models.rewards import reward_function

    reward_function(rm=rm, store=store)


def _evaluate(store, rm):
    from workbench.models.evaluation import scorer_for_eval

    scorer_for_eval(store, rm, max_length=64)


def _best_of_n(store, rm):
    from workbench.generate.bon import best_of_n

    best_of_n(store, "no-policy-needed", rm, 2, progress=False)


@pytest.mark.parametrize("use", [_score, _serve, _reward_function, _evaluate, _best_of_n])
@pytest.mark.parametrize("which, reason", [("ext", "its scores were imported"),
                                           ("mean-z(ext,tiny)", "it combines other reward models' scores")])
def test_a_labeler_without_weights_is_refused_with_one_message(three_kinds, use, which, reason):
    store = three_kinds[0]
    before = table_counts(store)
    label = resolve_reward_model(store, which).label
    with pytest.raises(WorkbenchError) as refused:
        use(store, which)
    assert str(refused.value) == f"reward model {label} has no weights here ({reason})"
    assert table_counts(store) == before
