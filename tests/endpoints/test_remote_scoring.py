"""Reward models behind servers: `workbench serve` (its /v1/score and OpenRLHF's /get_reward) and
vLLM's /pooling shape, scored into the store under a labeler that the rest of the workbench uses.

`workbench serve` runs in a thread on a loopback port with the tiny reward model; its scores must
equal what the same weights give in-process. The vLLM stand-in answers the documented pooling shape
(no vLLM here: it needs a GPU).
"""

from __future__ import annotations

import pytest

from tests.endpoints.conftest import runs
from tests.serving.conftest import running_server
from tests.workbench.conftest import write_jsonl
from workbench.endpoints.replicas import EndpointError, RetryPolicy
from workbench.endpoints.sampling import ServedModel
from workbench.endpoints.scoring import pooled_score, score_with_endpoint
from workbench.ingest.importer import import_files
from workbench.curate.pairs import build_pairs
from workbench.models.reward_models import list_with_formats, register_reward_model
from workbench.generate.scoring import score_responses
from workbench.serving.config import ServeConfig
from workbench.store import Store, queries

FAST = RetryPolicy(backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from engine.reward_model import RewardModel
    from tests.tiny import make_tiny_model_dir

    base = make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))
    return RewardModel.from_base(base).save(tmp_path_factory.mktemp("rm") / "tiny-rm")


@pytest.fixture(scope="module")
def reward_server(rm_dir, tmp_path_factory):
    """`workbench serve` over its own store, with an API key: (base URL, key)."""
    store = Store(tmp_path_factory.mktemp("server") / "serve.duckdb", timeout=20)
    register_reward_model(store, rm_dir, name="tiny")
    with running_server(store, ServeConfig(), api_key="rm-key") as (url, _, _):
        yield url, "rm-key"


@pytest.fixture
def replies(tmp_path) -> Store:
    store = Store(tmp_path / "replies.duckdb", timeout=30)
    records = [{"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": f"No {i}"}
               for i in range(5)]
    import_files(store, [write_jsonl(tmp_path / "pairs.jsonl", records)], source="demo", progress=False)
    return store


def _scores(store: Store, rm_id: str) -> dict[str, float]:
    with store.connect() as con:
        return dict(queries.fetch_rows(con, "SELECT response_id, score FROM scores WHERE rm_id = ?", [rm_id]))


def test_workbench_and_openrlhf_apis_score_as_the_weights_do_in_process(replies, reward_server, rm_dir,
                                                                        monkeypatch):
    url, key = reward_server
    monkeypatch.setenv("RM_KEY", key)
    local = score_responses(replies, str(rm_dir), progress=False)
    with replies.connect() as con:
        local_id = queries.lookup_reward_model(con, "tiny-rm").rm_id
    expected = _scores(replies, local_id)
    served = ServedModel([url], None, api="workbench", api_key_env="RM_KEY", retry=FAST, concurrency=3)
    first = score_with_endpoint(replies, served, batch_size=3, progress=False)
    rlhf = ServedModel([url], None, api="openrlhf", api_key_env="RM_KEY", retry=FAST, prompt_template=str(rm_dir))
    second = score_with_endpoint(replies, rlhf, name="tiny-rlhf", progress=False)
    assert first.scored == second.scored == local.scored == 10
    models = {m["name"]: m for m in list_with_formats(replies)}
    assert models[first.rm.split("@")[0]]["format"] == models["tiny-rlhf"]["format"] == "endpoint"
    with replies.connect() as con:
        remote_ids = [queries.lookup_reward_model(con, ref.split("@")[0]).rm_id for ref in (first.rm, second.rm)]
    for rm_id in remote_ids:
        assert _scores(replies, rm_id) == pytest.approx(expected, abs=1e-4)
    assert score_with_endpoint(replies, served, progress=False).scored == 0  # resumable: nothing left
    pairs = build_pairs(replies, first.rm, "best-vs-worst", progress=False)  # behaves like any reward model
    assert pairs.new_pairs == 5
    assert all(key not in str(run) for run in runs(replies))


def test_a_wrong_key_for_the_reward_server_registers_nothing(replies, reward_server, monkeypatch):
    url, _ = reward_server
    monkeypatch.setenv("RM_KEY", "wrong")
    with pytest.raises(EndpointError, match=r"/health refused the API key \(HTTP 401\)"):
        score_with_endpoint(replies, ServedModel([url], None, api="workbench", api_key_env="RM_KEY", retry=FAST),
                            progress=False)
    assert list_with_formats(replies) == [] and runs(replies) == []


def test_vllm_pooling_shape_scores_each_conversation(replies, stand_in_server):
    url, hits = stand_in_server
    result = score_with_endpoint(replies, ServedModel([f"{url}/vllm"], None, api="vllm", retry=FAST),
                                 progress=False)
    assert result.scored == 10 and hits["vllm"] == 10
    with replies.connect() as con:
        rm_id = queries.lookup_reward_model(con, result.rm.split("@")[0]).rm_id
        texts = dict(queries.fetch_rows(con, "SELECT response_id, text FROM responses"))
    assert _scores(replies, rm_id) == {r: float(len(t)) for r, t in texts.items()}
    assert result.rm.startswith("stand-in-vllm-at-127.0.0.1-")


def test_pooled_score_reads_one_label_and_token_level_answers():
    assert pooled_score({"data": [{"data": [0.25]}]}) == 0.25
    assert pooled_score({"data": [{"data": [[0.1], [0.2], [0.7]]}]}) == 0.7  # per token: the last one
    with pytest.raises(EndpointError, match="no single score"):
        pooled_score({"data": [{"data": [0.1, 0.9]}]})  # a two-label classifier is not a reward


def test_bon_over_an_endpoint_picks_each_prompts_best_with_a_local_reward_model(replies, rm_dir, stand_in_server):
    import json

    from click.testing import CliRunner

    from cli import load_commands

    url, _ = stand_in_server
    result = CliRunner().invoke(load_commands(), [
        "--db", str(replies.path), "-q", "bon", "--endpoint", f"{url}/ok", "--rm", str(rm_dir), "--n", "3",
        "--max-new-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["sampling"]["generated"], report["scoring"]["scored"], report["picks"]) == (15, 15, 5)
    assert report["sampling"]["usage"]["models"] == ["stand-in-ok"]
