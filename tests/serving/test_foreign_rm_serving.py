"""Reward models trained elsewhere (hf, openrlhf; `engine.rm_formats`) served and called as a TRL reward
function exactly as `workbench score` scores them, their recorded label index included."""

from __future__ import annotations

import json

import pytest
import torch

from tests.rm_builders import make_hf_rm, make_openrlhf_rm
from tests.serving.conftest import running_server
from tests.workbench.conftest import write_jsonl
from workbench.errors import WorkbenchError
from workbench.models.reward_models import register_reward_model
from workbench.models.rewards import reward_function
from workbench.serving.config import ServeConfig
from workbench.store import Store

PROMPTS = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Name a colour."}]]
REPLIES = [["It is 4.", "Probably five.", "4"], ["Blue.", "Red, I think."]]


@torch.no_grad()
def transformers_scores(path, label: int) -> dict[str, float]:
    """What transformers gives for each reply: the classifier's logit `label`, one conversation at a time."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = {}
    for prompt, replies in zip(PROMPTS, REPLIES):
        for reply in replies:
            ids = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}],
                                                return_tensors="pt", return_dict=True)["input_ids"]
            out[reply] = model(input_ids=ids).logits[0, label].item()
    return out


@pytest.fixture
def multi_store(tmp_path) -> Store:
    """A store whose model "tiny" is output 1 of a two-output hf classifier (a multi-objective head)."""
    store = Store(tmp_path / "serve.duckdb", timeout=20)
    register_reward_model(store, make_hf_rm(tmp_path / "multi", num_labels=2), name="tiny", label_index=1)
    return store


def test_an_hf_label_index_model_serves_its_recorded_output(multi_store, tmp_path, client):
    expected = transformers_scores(tmp_path / "multi", label=1)
    conversations = [[*p, {"role": "assistant", "content": r}] for p, replies in zip(PROMPTS, REPLIES) for r in replies]
    with running_server(multi_store, ServeConfig(precision="fp32", max_length=64, max_batch_tokens=256)) \
            as (url, server, _):
        body = client.post(f"{url}/v1/score", json={"conversations": conversations}).json()
        assert body["model"] == "tiny@1" and body["truncated"] == [False] * len(conversations)
        assert body["scores"] == pytest.approx([expected[c[-1]["content"]] for c in conversations], abs=1e-4)
        long = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "4"}]
        cut = client.post(f"{url}/v1/score", json={"conversations": [long]}).json()
        assert cut["truncated"] == [True]  # the hf encoder reports the cut the server logs


def test_reward_function_reads_the_recorded_format_and_label(multi_store, tmp_path):
    expected = transformers_scores(tmp_path / "multi", label=1)
    local = reward_function(rm="tiny", store=multi_store, precision="fp32")
    completions = [[{"role": "assistant", "content": r}] for r in REPLIES[0]]
    assert local([PROMPTS[0]] * 3, completions) == pytest.approx([expected[r] for r in REPLIES[0]], abs=1e-4)


def test_serving_an_openrlhf_model_equals_workbench_score(tmp_path, client):
    from workbench.ingest.importer import import_files
    from workbench.generate.scoring import score_responses

    store = Store(tmp_path / "serve.duckdb", timeout=20)
    register_reward_model(store, make_openrlhf_rm(tmp_path / "orl"), name="tiny")
    data = write_jsonl(tmp_path / "bon.jsonl", [{"prompt": p, "responses": r} for p, r in zip(PROMPTS, REPLIES)])
    import_files(store, [data], fmt="bon", progress=False)
    score_responses(store, "tiny", precision="fp32", progress=False)
    with store.connect() as con:
        stored = dict(con.execute("SELECT r.text, s.score FROM scores s JOIN responses r USING (response_id)")
                      .fetchall())
    conversations = [[*p, {"role": "assistant", "content": r}] for p, replies in zip(PROMPTS, REPLIES) for r in replies]
    with running_server(store, ServeConfig(precision="fp32")) as (url, _, _):
        scores = client.post(f"{url}/v1/score", json={"conversations": conversations}).json()["scores"]
    assert scores == pytest.approx([stored[c[-1]["content"]] for c in conversations], abs=1e-5)


def test_a_changed_model_is_refused_by_the_server_and_the_reward_function(multi_store, tmp_path):
    config = tmp_path / "multi" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"initializer_range": 0.5}))
    with pytest.raises(WorkbenchError, match="changed since tiny@1 was registered"):
        with running_server(multi_store, ServeConfig()):
            pass
    with pytest.raises(WorkbenchError, match="changed since tiny@1 was registered"):
        reward_function(rm="tiny", store=multi_store)
