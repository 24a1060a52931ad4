"""A remote judge (`workbench judge ... --endpoint URL`) against a real OpenAI-compatible server on a
loopback port that answers fixed texts: strict parsing, unparseable answers recorded, never guessed."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from fastapi import FastAPI, Request

from cli import load_commands
from tests.processes import free_port
from tests.workbench.conftest import write_jsonl
from workbench.ingest.importer import import_files
from workbench.store import Store, queries

# The templates put the texts between bars, so the server can read what it was shown.
PAIRWISE = "{prompt}|{response_a}|{response_b}"
RUBRIC = "{prompt}|{response}"
PAIRS = [{"prompt": "consistent", "chosen": "good", "rejected": "bad"},
         {"prompt": "chatty", "chosen": "good", "rejected": "bad"},
         {"prompt": "first-always", "chosen": "good", "rejected": "bad"}]


def answer(shown: str) -> str:
    """The judge's fixed behaviour: prefers "good" with stray white space; `chatty` answers in a
    sentence (unparseable); `first-always` picks whichever reply is shown first."""
    parts = shown.split("|")
    prompt = parts[0]
    if len(parts) == 2:  # rubric
        return "4/5" if prompt == "chatty" else (" 4\n" if parts[1] == "good" else "2")
    if prompt == "chatty":
        return "I think A is better."
    if prompt == "first-always":
        return "A"
    return " A\n" if parts[1] == "good" else "B"


@contextmanager
def judge_server():
    import uvicorn

    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fixed-judge", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = answer(body["messages"][-1]["content"])
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "judge server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server_url():
    with judge_server() as url:
        yield url


def test_remote_verdicts_are_parsed_strictly_and_unparseable_ones_recorded(tmp_path, server_url):
    store = Store(tmp_path / "remote.duckdb", timeout=10)
    import_files(store, [write_jsonl(tmp_path / "pairs.jsonl", PAIRS)], source="qa", progress=False)
    (tmp_path / "pairwise.txt").write_text(PAIRWISE)
    (tmp_path / "rubric.txt").write_text(RUBRIC)
    runner, db = CliRunner(), str(store.path)

    def cli(*args):
        result = runner.invoke(load_commands(), ["--db", db, "-q", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    judged = cli("judge", "pairs", "--endpoint", server_url, "--template", str(tmp_path / "pairwise.txt"), "--json")
    assert (judged["judged"], judged["unparseable"]) == (3, 1)
    assert judged["judge"] == "judge-fixed-judge-pairwise@1"
    with store.connect() as con:
        texts = dict(queries.fetch_rows(con, "SELECT response_id, text FROM responses"))
        prompts = dict(queries.fetch_rows(con, "SELECT prompt_id, text FROM prompts"))
        verdicts = {prompts[v["prompt_id"]]: v for v in queries.pair_verdicts(con, judged["rm_id"])}
        inconsistent = queries.inconsistent_pairs(con, judged["rm_id"])
        scored = {texts[r]: s for r, s in queries.fetch_rows(
            con, "SELECT s.response_id, s.score FROM scores s JOIN responses r USING (response_id) "
                 "JOIN prompts p USING (prompt_id) WHERE s.rm_id = ? AND p.text = 'consistent'", [judged["rm_id"]])}
        unscored = queries.fetch_value(con, "SELECT count(*) FROM scores s JOIN responses r USING (response_id) "
                                            "JOIN prompts p USING (prompt_id) WHERE p.text = 'chatty'")
    good_is_a = texts[verdicts["consistent"]["response_a"]] == "good"
    assert verdicts["consistent"]["p_a_better"] == (1.0 if good_is_a else 0.0)
    assert verdicts["consistent"]["consistent"] is True
    assert {verdicts["consistent"]["answer_a_first"], verdicts["consistent"]["answer_a_second"]} == {" A\n", "B"}
    assert scored["good"] > scored["bad"]
    chatty = verdicts["chatty"]
    assert chatty["p_a_first"] is None and chatty["p_a_second"] is None and chatty["p_a_better"] is None
    assert chatty["consistent"] is None and chatty["answer_a_first"] == "I think A is better."
    assert unscored == 0  # an unparseable verdict is no score
    position = verdicts["first-always"]
    assert (position["p_a_first"], position["p_a_second"], position["p_a_better"], position["consistent"]) == \
        (1.0, 0.0, 0.5, False)
    assert [row[1:] for row in inconsistent] == [(position["response_a"], position["response_b"])]
    report = cli("judge", "report", judged["judge"], "--json")
    assert report["verdicts"]["unparseable"] == 1 and report["position_consistency"] == 0.5
    assert report["verdicts"]["p_first_shown_better"] == 0.75  # consistent: 1/2; first-always: 1
    assert report["human_agreement"] == {"pairs": 2, "agree": 1, "ties": 1, "accuracy": 0.75,
                                         "ci95": report["human_agreement"]["ci95"]}

    rated = cli("judge", "rubric", "--endpoint", server_url, "--template", str(tmp_path / "rubric.txt"), "--json")
    assert (rated["judged"], rated["unparseable"]) == (6, 2)
    with store.connect() as con:
        ratings = queries.fetch_rows(con, """
            SELECT p.text, r.text, j.rating, j.answer FROM judge_ratings j JOIN responses r USING (response_id)
            JOIN prompts p ON p.prompt_id = j.prompt_id WHERE j.rm_id = ? ORDER BY 1, 2""", [rated["rm_id"]])
        rating_scores = queries.fetch_value(con, "SELECT count(*) FROM scores WHERE rm_id = ?", [rated["rm_id"]])
    assert ratings[:2] == [("chatty", "bad", None, "4/5"), ("chatty", "good", None, "4/5")]
    assert ratings[2:4] == [("consistent", "bad", 2.0, "2"), ("consistent", "good", 4.0, " 4\n")]
    assert rating_scores == 4
