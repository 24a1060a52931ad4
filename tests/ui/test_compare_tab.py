"""The Compare reward models tab and the SFT schema of the export panel, over HTTP."""

import json

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.ui.conftest import NO_FILTER, running_app
from tests.ui.data import make_store
from workbench.models.compare import compare_reward_models
from workbench.exports.export import export_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.ingest.importer import import_files


@pytest.fixture(scope="module")
def two_model_store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("compare-app")
    store = make_store(directory)
    # a second "reward model" that reverses the first one's order on every prompt
    rows = [json.loads(line) for line in (directory / "bon.jsonl").read_text().splitlines()]
    judged = directory / "judge.jsonl"
    judged.write_text("".join(json.dumps({**r, "scores": [-s for s in r["scores"]]}) + "\n" for r in rows))
    import_files(store, [judged], fmt="bon", source="bon-demo", score_name="judge", progress=False)
    return store


def test_compare_panel_and_sft_export_over_http(two_model_store, tmp_path):
    expected = compare_reward_models(two_model_store, "ext@1", "judge@1", top=3)
    with running_app(two_model_store, export_dir=tmp_path / "exports") as (demo, url):
        client = Client(url, verbose=False)
        notice, summary, pairs = client.predict("ext@1", "judge@1", 3, api_name="/compare_reward_models")
        assert f"{expected['responses']:,} replies" in notice
        values = {row[0]: row[1] for row in summary["data"]}
        assert values["Same-prompt pairs ordered the same way"] == 0.0
        assert values["Spearman rho, all responses"] == pytest.approx(-1.0)
        assert [row[-1] for row in pairs["data"]] == [d["prompt_id"] for d in expected["disagreements"]]
        with pytest.raises(AppError, match="compared with itself"):
            client.predict("ext@1", "ext@1", 3, api_name="/compare_reward_models")

        with pytest.raises(AppError, match="needs --rm"):
            client.predict("sft-none", "jsonl", "sft", False, False, *NO_FILTER, api_name="/export")


def test_export_panel_offers_sft_and_writes_what_the_cli_writes(two_model_store, tmp_path):
    import gradio as gr

    from ui.app import build_app
    from workbench.curate.curation import export_curated

    demo = build_app(two_model_store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r")
    radios = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Schema"]
    assert [choice[1] for choice in radios[0].choices][-1] == "sft"
    done = export_curated(two_model_store, tmp_path / "e", "sft-rows", PairFilter(rm="ext@1"), schema="sft")
    reference = export_pairs(two_model_store, tmp_path / "ref.jsonl", schema="sft", pair_filter=PairFilter(rm="ext@1"))
    assert done["rows"] == reference.rows > 0 and done["manifest"]["schema"] == "sft"
    assert (tmp_path / "ref.jsonl").read_text() == (tmp_path / "e" / "sft-rows.jsonl").read_text()
