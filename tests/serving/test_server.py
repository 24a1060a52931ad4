"""The reward server over HTTP on 127.0.0.1: OpenRLHF's request, /v1/score, auth, limits, batching."""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest

from tests.serving.conftest import running_server
from tests.workbench.conftest import write_jsonl
from workbench.errors import WorkbenchError
from workbench.serving.config import ServeConfig

PROMPTS = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}] for i in range(3)]
REPLIES = [[f"It is {2 * i}.", f"Maybe {i}?", "I do not know, sorry."] for i in range(3)]


def chatml(messages, reply=None):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    return text if reply is None else text + reply + "<|im_end|>"


def test_openrlhf_request_and_v1_score_give_the_scores_of_workbench_score(store, tmp_path, client):
    from workbench.ingest.importer import import_files
    from workbench.generate.scoring import score_responses

    data = write_jsonl(tmp_path / "bon.jsonl", [{"prompt": p, "responses": r} for p, r in zip(PROMPTS, REPLIES)])
    import_files(store, [data], fmt="bon", progress=False)
    score_responses(store, "tiny", progress=False)
    with store.connect() as con:
        stored = {(prompt, reply): score for prompt, reply, score in con.execute("""SELECT p.text, r.text, s.score
            FROM scores s JOIN responses r USING (response_id) JOIN prompts p USING (prompt_id)""").fetchall()}
    expected = [stored[p[-1]["content"], r] for p, replies in zip(PROMPTS, REPLIES) for r in replies]
    with running_server(store, ServeConfig()) as (url, server, _):
        queries = [chatml(p, r) for p, replies in zip(PROMPTS, REPLIES) for r in replies]
        prompts = [chatml(p) for p, replies in zip(PROMPTS, REPLIES) for _ in replies]
        # exactly what OpenRLHF's remote RM client posts: query, prompts, labels
        answer = client.post(f"{url}/get_reward", json={"query": queries, "prompts": prompts,
                                                        "labels": [""] * len(queries)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"rewards", "scores", "extra_logs"}
        assert body["rewards"] == body["scores"] and body["extra_logs"] == {"truncated": [0] * len(queries)}
        assert body["rewards"] == pytest.approx(expected, abs=1e-5)
        # without `prompts`, the split at the last assistant header gives the same scores
        alone = client.post(f"{url}/get_reward", json={"query": queries}).json()["rewards"]
        assert alone == pytest.approx(expected, abs=1e-5)
        conversations = [[*p, {"role": "assistant", "content": r}] for p, replies in zip(PROMPTS, REPLIES) for r in replies]
        scored = client.post(f"{url}/v1/score", json={"conversations": conversations}).json()
        assert scored["model"] == "tiny@1" and scored["scores"] == pytest.approx(expected, abs=1e-5)
        assert client.post(f"{url}/get_reward", json={"query": []}).json() == \
            {"rewards": [], "scores": [], "extra_logs": {"truncated": []}}
        health = client.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["requests_served"] == 4
        metrics = client.get(f"{url}/metrics").text
    assert 'workbench_rm_requests_total{endpoint="/get_reward",code="200"} 3' in metrics
    assert f"workbench_rm_conversations_total {3 * len(queries)}" in metrics
    assert 'workbench_rm_request_seconds_count{endpoint="/v1/score"} 1' in metrics
    assert "workbench_rm_batch_conversations_bucket" in metrics and "workbench_rm_queue_depth 0" in metrics


def test_with_a_key_every_request_needs_it_and_other_hosts_need_a_key(store, client):
    conversation = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    with running_server(store, ServeConfig(), api_key="s3cret") as (url, _, _):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for method, path, body in (("POST", "/v1/score", {"conversations": conversation}),
                                       ("POST", "/get_reward", {"query": [chatml([], "x")]}),
                                       ("GET", "/health", None), ("GET", "/metrics", None)):
                answer = client.request(method, url + path, json=body, headers=headers)
                assert answer.status_code == 401 and "API key" in answer.json()["error"]
        ok = client.post(f"{url}/v1/score", json={"conversations": conversation},
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and len(ok.json()["scores"]) == 1
    with running_server(store, ServeConfig()) as (url, _, _):  # no key: open on loopback
        assert client.get(f"{url}/health").status_code == 200
    with pytest.raises(WorkbenchError, match="without an API key"):
        ServeConfig(host="0.0.0.0").validate(None)
    ServeConfig(host="0.0.0.0").validate("s3cret")
    ServeConfig(host="::1").validate(None)


def test_oversized_malformed_and_mistyped_requests_get_413_and_422(store, client):
    with running_server(store, ServeConfig(max_request_bytes=2000)) as (url, _, _):
        big = {"query": [chatml([{"role": "user", "content": "x" * 3000}], "y")]}
        answer = client.post(f"{url}/get_reward", json=big)
        assert answer.status_code == 413 and "larger than 2000 bytes" in answer.json()["error"]

        def chunks():  # no Content-Length: the size is counted as the body streams in
            yield b'{"query": ["'
            for _ in range(10):
                yield b"z" * 500
            yield b'"]}'
        streamed = client.post(f"{url}/get_reward", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        for body, reason in [(b"{not json", "not valid JSON"), (b'["a"]', "'query'"), (b'{"query": "text"}', "list of str"),
                             (b'{"query": [1]}', "list of str"), (b'{"query": ["a"], "prompts": ["a", "b"]}', "has 2"),
                             (b'{"query": ["no turn markers"]}', "query 0: no assistant turn marker"),
                             (b'{"query": [], "step": "7"}', "'step'")]:
            answer = client.post(f"{url}/get_reward", content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422 and reason in answer.json()["error"], (body, answer.text)
            assert "\n" not in answer.json()["error"]
        for body, reason in [({"conversations": "x"}, "'conversations'"), ({"conversations": [[]]}, "conversation 0"),
                             ({"conversations": [[{"role": "user", "content": "hi"}]]}, "end with an assistant"),
                             ({"conversations": [[{"role": "robot", "content": "a"}, {"role": "assistant", "content": "b"}]]},
                              "role 'robot'")]:
            answer = client.post(f"{url}/v1/score", json=body)
            assert answer.status_code == 422 and reason in answer.json()["error"], (body, answer.text)
        assert client.post(f"{url}/v1/score", json={"conversations": [[{"role": "assistant", "content": "ok"}]]}
                           ).status_code == 200  # still serving


def test_a_long_conversation_keeps_its_end_and_extra_logs_say_so(store, client):
    from engine.scoring import load_scorer
    from engine.data import ScoringItem

    long_prompt = [{"role": "user", "content": "blah " * 200}]
    with running_server(store, ServeConfig(max_length=64, max_batch_tokens=256)) as (url, server, _):
        body = client.post(f"{url}/get_reward", json={"query": [chatml(long_prompt, "short"),
                                                                chatml([{"role": "user", "content": "hi"}], "yo")]}).json()
        assert body["extra_logs"]["truncated"] == [1, 0]
        reference = load_scorer(server.model.path, max_length=64, precision=server.config.precision)
        expected = reference.score([ScoringItem(long_prompt, "short"), ScoringItem([{"role": "user", "content": "hi"}], "yo")])
        assert body["rewards"] == pytest.approx(expected, abs=1e-5)
        assert "workbench_rm_truncated_total 1" in client.get(f"{url}/metrics").text


class GatedScorer:
    """The real scorer behind a gate, so a test can hold the scoring thread still."""

    def __init__(self, scorer, nan: bool = False):
        self.scorer, self.encoder, self.nan = scorer, scorer.encoder, nan
        self.entered, self.gate = threading.Event(), threading.Event()

    def score_encoded_items(self, items, encoded, **kwargs):
        self.entered.set()
        assert self.gate.wait(30)
        scores = self.scorer.score_encoded_items(items, encoded, **kwargs)
        return [math.nan] * len(scores) if self.nan else scores


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_full_queue_answers_503_and_queued_requests_still_get_scored(store, rm_dir):
    from engine.scoring import load_scorer

    scorer = GatedScorer(load_scorer(str(rm_dir)))
    body = {"conversations": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]}
    answers = {}

    def post(name, url):
        answers[name] = httpx.post(f"{url}/v1/score", json=body, timeout=30)

    with running_server(store, ServeConfig(max_queue=1, max_batch_requests=1, max_wait_ms=0), scorer=scorer) as (url, server, _):
        first = threading.Thread(target=post, args=("first", url))
        first.start()
        assert scorer.entered.wait(20)  # the scoring thread holds the first request
        second = threading.Thread(target=post, args=("second", url))
        second.start()
        _wait_for(lambda: server.batcher.depth() == 1)  # the second waits in the queue
        refused = httpx.post(f"{url}/v1/score", json=body, timeout=30)
        assert refused.status_code == 503 and "queue is full" in refused.json()["error"]
        assert refused.headers["retry-after"] == "1"
        scorer.gate.set()
        first.join(30), second.join(30)
    assert answers["first"].status_code == answers["second"].status_code == 200


def test_non_finite_scores_are_refused_never_sent(store, rm_dir, client):
    from engine.scoring import load_scorer

    scorer = GatedScorer(load_scorer(str(rm_dir)), nan=True)
    scorer.gate.set()
    with running_server(store, ServeConfig(log_to_store=True), scorer=scorer) as (url, server, _):
        answer = client.post(f"{url}/get_reward", json={"query": [chatml([{"role": "user", "content": "a"}], "b")]})
        assert answer.status_code == 500 and "non-finite" in answer.json()["error"] and "NaN" not in answer.text
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM responses").fetchall()[0][0] == 0  # nothing logged either


def test_concurrent_requests_are_batched_and_scored_as_if_alone(store, client):
    conversations = [[{"role": "user", "content": f"prompt {i % 3}"}, {"role": "assistant", "content": f"reply {i}" * (i + 1)}]
                     for i in range(12)]
    with running_server(store, ServeConfig(max_batch_requests=1)) as (url, _, _):
        alone = [client.post(f"{url}/v1/score", json={"conversations": [c]}).json()["scores"][0] for c in conversations]
    with running_server(store, ServeConfig(max_wait_ms=300)) as (url, _, _):
        results = [None] * len(conversations)

        def post(i):
            results[i] = httpx.post(f"{url}/v1/score", json={"conversations": [conversations[i]]}, timeout=30).json()

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(conversations))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        metrics = client.get(f"{url}/metrics").text
    assert [r["scores"][0] for r in results] == pytest.approx(alone, abs=1e-5)
    batches = int(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("workbench_rm_batches_total")))
    assert batches < len(conversations)  # several requests shared a batch


def test_serve_command_refuses_unsafe_or_impossible_settings_in_one_line(store, monkeypatch):
    from click.testing import CliRunner

    from cli import load_commands

    def run(*args):
        return CliRunner().invoke(load_commands(), ["--db", str(store.path), "serve", "--rm", "tiny", *args])

    refused = run("--host", "0.0.0.0")
    assert refused.exit_code == 1 and "refusing to listen on 0.0.0.0 without an API key" in refused.output
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    missing = run("--api-key-env", "NO_SUCH_KEY_VAR")
    assert missing.exit_code == 1 and "NO_SUCH_KEY_VAR: the environment variable is unset or empty" in missing.output
    small = run("--max-length", "4096", "--max-batch-tokens", "1024")
    assert small.exit_code == 1 and "--max-batch-tokens (1024) must be at least --max-length (4096)" in small.output
    unknown = run("--rm", "nope", "--port", "0")
    assert unknown.exit_code == 1 and "reward model 'nope' not found" in unknown.output
