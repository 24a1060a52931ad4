"""The reward server against hostile or careless clients: foreign pages, huge or broken bodies,
non-ASCII keys, clients that leave. Each case answers one JSON line (or nothing, for a client that
is gone), is counted in /metrics, logs no traceback and leaves the store as it was."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx

from tests.serving.conftest import running_server
from tests.serving.test_server import GatedScorer, _wait_for, chatml
from workbench.serving.config import ServeConfig

JSON = {"Content-Type": "application/json"}
GONE = 'workbench_rm_requests_total{endpoint="/v1/score",code="499"}'
CONVERSATION = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def stored_replies(store) -> list[str]:
    with store.connect() as con:
        return [text for (text,) in con.execute("SELECT text FROM responses ORDER BY text").fetchall()]


def metric(text: str, name: str) -> int:
    return sum(int(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


class LogRecords(logging.Handler):
    """Every record of the server's loggers (uvicorn's do not reach the root logger)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info]

    def __enter__(self):
        for name in ("uvicorn", "workbench", ""):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in ("uvicorn", "workbench", ""):
            logging.getLogger(name).removeHandler(self)


def test_a_web_page_cannot_write_into_the_store(store, client):
    """A page on evil.example posting text/plain (no preflight) or rebinding its name to 127.0.0.1."""
    body = json.dumps({"query": [chatml([{"role": "user", "content": "evil"}], "planted")]})
    with running_server(store, ServeConfig(log_to_store=True)) as (url, server, _):
        port = server.address[1]
        attempts = [
            ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),  # cross-origin fetch, no-cors
            ({"Content-Type": "text/plain"}, 415),  # a form or a beacon
            ({}, 415),  # no type at all (a Blob body)
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({**JSON, "Origin": "http://evil.example"}, 403),
            ({**JSON, "Origin": "null"}, 403),  # a sandboxed frame
            ({**JSON, "Host": f"evil.example:{port}"}, 400),  # DNS rebinding: same origin, foreign name
            ({**JSON, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, 400),
            ({**JSON, "Origin": f"http://localhost:{port + 1}"}, 403),  # another local page
        ]
        for headers, status in attempts:
            answer = client.post(f"{url}/get_reward", content=body, headers=headers)
            assert answer.status_code == status, (headers, answer.text)
            assert "\n" not in answer.json()["error"]
        assert client.get(f"{url}/metrics", headers={"Host": "evil.example"}).status_code == 400
        # the server's own names, with or without a same-origin Origin, and with a charset
        for headers in ({**JSON, "Origin": f"http://127.0.0.1:{port}"}, {**JSON, "Host": f"localhost:{port}"},
                        {"Content-Type": "Application/JSON; charset=utf-8"}):
            assert client.post(f"{url}/get_reward", content=body, headers=headers).status_code == 200, headers
        metrics = client.get(f"{url}/metrics").text
    assert stored_replies(store) == ["planted"] * 3  # only the three allowed requests
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="/get_reward",code="4') == len(attempts)


def test_with_a_key_other_host_names_are_served_but_foreign_origins_are_not(store, client):
    auth = {"Authorization": "Bearer k3y", **JSON}
    body = {"conversations": [CONVERSATION]}
    with running_server(store, ServeConfig(), api_key="k3y") as (url, server, _):
        port = server.address[1]
        assert client.post(f"{url}/v1/score", json=body, headers={**auth, "Host": f"rm.internal:{port}"}).status_code == 200
        assert client.post(f"{url}/v1/score", json=body, headers={**auth, "Origin": "https://evil.example"}).status_code == 403


def test_a_non_ascii_api_key_matches_in_utf8_and_latin1(store, client):
    body = json.dumps({"conversations": [CONVERSATION]}).encode()
    with running_server(store, ServeConfig(), api_key="clé-ключ") as (url, _, _):
        sent = [("Bearer clé-ключ".encode("utf-8"), 200), ("Bearer clé-ключ".encode("utf-8")[:-1], 401),
                (b"Bearer cl\xc3\xa9", 401)]
        for header, status in sent:
            answer = client.post(f"{url}/v1/score", content=body, headers=[(b"Authorization", header),
                                                                            (b"Content-Type", b"application/json")])
            assert answer.status_code == status, (header, answer.text)
    with running_server(store, ServeConfig(), api_key="clé") as (url, _, _):
        for header in ("Bearer clé".encode("utf-8"), "Bearer clé".encode("latin-1")):  # requests sends latin-1
            answer = client.post(f"{url}/v1/score", content=body, headers=[(b"Authorization", header),
                                                                            (b"Content-Type", b"application/json")])
            assert answer.status_code == 200, header


def test_queries_over_the_caps_are_refused_before_any_work_and_never_stored(store, client):
    with running_server(store, ServeConfig(log_to_store=True)) as (url, _, _):  # the defaults: 1 MiB, 4096
        huge = chatml([{"role": "user", "content": "x" * (2 << 20)}], "long")
        started = time.monotonic()
        answer = client.post(f"{url}/get_reward", json={"query": [chatml([], "fine"), huge]})
        assert answer.status_code == 413 and "query 1 is 2,097,2" in answer.json()["error"], answer.text
        assert "--max-query-bytes" in answer.json()["error"] and time.monotonic() - started < 10
        many = client.post(f"{url}/get_reward", json={"query": ["q"] * 5000})
        assert many.status_code == 413 and "5,000 queries" in many.json()["error"]
        conversation = [{"role": "user", "content": "é" * (600 << 10)}, {"role": "assistant", "content": "ok"}]
        assert client.post(f"{url}/v1/score", json={"conversations": [conversation]}).status_code == 413  # 1.2 MB
        assert client.post(f"{url}/v1/score", json={"conversations": [CONVERSATION] * 4097}).status_code == 413
    with running_server(store, ServeConfig(log_to_store=True, max_query_bytes=200, max_queries_per_request=3)) as (url, _, _):
        ok = client.post(f"{url}/get_reward", json={"query": [chatml([], "a" * 100)] * 3})
        assert ok.status_code == 200
        assert client.post(f"{url}/get_reward", json={"query": [chatml([], "a")] * 4}).status_code == 413
        assert client.post(f"{url}/get_reward", json={"query": [chatml([], "a" * 200)]}).status_code == 413
        prompt = chatml([{"role": "user", "content": "p" * 300}])
        assert client.post(f"{url}/get_reward", json={"query": [prompt + "r"], "prompts": [prompt]}).status_code == 413
        # 16 bytes a message count too: many empty messages are not free
        empty = [{"role": "user", "content": ""}] * 12 + [{"role": "assistant", "content": "x"}]
        assert client.post(f"{url}/v1/score", json={"conversations": [empty]}).status_code == 413
    assert stored_replies(store) == ["a" * 100] * 3


def test_deep_nesting_surrogates_and_odd_json_get_422_and_every_status_is_counted(store, client):
    bodies = [b"[" * 100_000 + b"]" * 100_000, b'{"query": [' * 50_000,
              b'{"query": ["\\ud800<|im_start|>assistant\\nx"]}', b'{"conversations": [[{"role": "assistant", "content": "\\udfff"}]]}',
              b'{"query": [], "step": 1' + b"0" * 5000 + b"}", b'{"query": [NaN]}', b'\xff\xfe{"query": []}']
    with running_server(store, ServeConfig(log_to_store=True)) as (url, _, _), LogRecords() as log:
        for body in bodies:
            for path in ("/get_reward", "/v1/score"):
                answer = client.post(url + path, content=body, headers=JSON)
                assert answer.status_code == 422 and "\n" not in answer.json()["error"], (body[:60], answer.text)
        bad_role = [{"role": ["x"] * 1000, "content": "a"}, {"role": "assistant", "content": "b"}]
        answer = client.post(f"{url}/v1/score", json={"conversations": [bad_role]})
        assert answer.status_code == 422 and len(answer.text) < 200
        assert client.get(f"{url}/no/such/page").json() == {"error": "Not Found"}
        metrics = client.get(f"{url}/metrics").text
    assert not log.tracebacks()
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="/get_reward",code="422"}') == len(bodies)
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="/v1/score",code="422"}') == len(bodies) + 1
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="other",code="404"}') == 1
    assert stored_replies(store) == []


class BrokenScorer:
    """A scorer whose forward pass fails: a bug the server must answer with one JSON 500 and count."""

    def __init__(self, scorer):
        self.encoder = scorer.encoder

    def score_encoded_items(self, items, encoded, **kwargs):
        raise RuntimeError("the forward pass broke")


def test_an_unexpected_error_is_one_json_500_and_counted(store, rm_dir, client):
    from engine.scoring import load_scorer

    with running_server(store, ServeConfig(), scorer=BrokenScorer(load_scorer(str(rm_dir)))) as (url, _, _):
        answer = client.post(f"{url}/v1/score", json={"conversations": [CONVERSATION]})
        assert answer.status_code == 500 and "RuntimeError" in answer.json()["error"]
        assert client.get(f"{url}/health").status_code == 200
        metrics = client.get(f"{url}/metrics").text
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="/v1/score",code="500"}') == 1


def _raw_request(url: str, head: bytes, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head + body)
    return sock


def test_a_client_that_drops_mid_body_is_counted_without_a_traceback(store, client):
    with running_server(store, ServeConfig()) as (url, _, _), LogRecords() as log:
        for _ in range(5):
            sock = _raw_request(url, b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 100000\r\n\r\n", b'{"conversations": [[')
            time.sleep(0.05)
            sock.close()
        _wait_for(lambda: metric(client.get(f"{url}/metrics").text, GONE) == 5)
        assert client.post(f"{url}/v1/score", json={"conversations": [CONVERSATION]}).status_code == 200
    assert not log.tracebacks()
    assert not [r for r in log.records if r.levelno >= logging.WARNING], [r.getMessage() for r in log.records]


def test_a_request_whose_client_left_is_not_scored_logged_or_counted_as_served(store, rm_dir, client):
    from engine.scoring import load_scorer

    scorer = GatedScorer(load_scorer(str(rm_dir)))
    seen = []
    original = scorer.score_encoded_items

    def recording(items, encoded, **kwargs):
        seen.extend(item.response for item in items)
        return original(items, encoded, **kwargs)
    scorer.score_encoded_items = recording
    config = ServeConfig(log_to_store=True, max_batch_requests=1, max_wait_ms=0)
    answers = {}
    with running_server(store, config, scorer=scorer) as (url, server, _), LogRecords() as log:
        def post(name, reply, timeout):
            try:
                answers[name] = httpx.post(f"{url}/v1/score", json={"conversations": [
                    [{"role": "user", "content": "q"}, {"role": "assistant", "content": reply}]]}, timeout=timeout)
            except httpx.TimeoutException:
                answers[name] = "gone"

        first = threading.Thread(target=post, args=("kept", "kept reply", 60))
        first.start()
        assert scorer.entered.wait(20)  # the scoring thread holds the first request
        dropped = threading.Thread(target=post, args=("dropped", "dropped reply", 1.5))  # gives up, closes
        dropped.start()
        _wait_for(lambda: server.batcher.depth() == 1)
        dropped.join(20)
        assert answers["dropped"] == "gone"
        _wait_for(lambda: metric(client.get(f"{url}/metrics").text, GONE) == 1)
        scorer.gate.set()
        first.join(30)
        _wait_for(lambda: server.batcher.depth() == 0)
        assert client.post(f"{url}/v1/score", json={"conversations": [CONVERSATION]}).status_code == 200
        metrics = client.get(f"{url}/metrics").text
    assert answers["kept"].status_code == 200
    assert "dropped reply" not in seen and "kept reply" in seen
    assert stored_replies(store) == ["hello", "kept reply"]
    assert metric(metrics, 'workbench_rm_requests_total{endpoint="/v1/score",code="200"}') == 2
    assert metric(metrics, "workbench_rm_conversations_total") == 2
    assert not log.tracebacks()


def test_a_dropped_request_in_a_running_batch_is_not_logged(store, rm_dir):
    """A client that leaves once its batch runs: scored (it cannot be stopped) but neither logged nor served."""
    from engine.scoring import load_scorer

    scorer = GatedScorer(load_scorer(str(rm_dir)))
    answers = {}
    with running_server(store, ServeConfig(log_to_store=True, max_wait_ms=0), scorer=scorer) as (url, server, _):
        def post():
            try:
                answers["x"] = httpx.post(f"{url}/v1/score", json={"conversations": [CONVERSATION]}, timeout=1.5)
            except httpx.TimeoutException:
                answers["x"] = "gone"
        thread = threading.Thread(target=post)
        thread.start()
        assert scorer.entered.wait(20)
        thread.join(20)
        _wait_for(lambda: metric(httpx.get(f"{url}/metrics").text, GONE) == 1)
        scorer.gate.set()
        _wait_for(lambda: metric(httpx.get(f"{url}/metrics").text, "workbench_rm_batches_total") == 1)
        served = server.metrics.served()
    assert answers["x"] == "gone" and served == 0
    assert stored_replies(store) == []
