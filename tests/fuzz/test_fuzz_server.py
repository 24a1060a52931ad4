"""Fuzzing `workbench serve`: mutated real `/get_reward` (OpenRLHF) and `/v1/score` bodies against a
real server process (a tiny registered reward model, rollouts logged to the store).

Each example starts from a body a trainer really sends, mutates its JSON tree (values replaced by
other types, nasty strings, long strings, many items, deep nesting, keys dropped or added), may
mutate the serialised bytes (cut, flipped, non-UTF-8) and the headers (Content-Type, Origin, Host),
and posts it. The invariant: every answer is a 2xx of the right shape or a 4xx with a one-line
JSON error; never a 5xx; the server stays healthy; its memory stays bounded; its log holds no
traceback and no failed rollout write; SIGTERM then stops it with exit 0.

    pytest -m fuzz tests/fuzz/test_fuzz_server.py                                   # 20 examples
    WORKBENCH_FUZZ_EXAMPLES=10000 pytest -m fuzz tests/fuzz/test_fuzz_server.py     # the full run
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.processes import free_port

EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "20"))
REPO = Path(__file__).resolve().parents[2]
MEMORY_GROWTH_LIMIT = 1 << 30  # bytes of resident memory the server may gain over the whole run

pytestmark = pytest.mark.fuzz


def chatml(messages, reply=None):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    return text if reply is None else text + reply + "<|im_end|>"


PROMPTS = [[{"role": "user", "content": "What is 2 + 2?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]]
REPLIES = ["4.", "Red, of course.", ""]


def openrlhf_body() -> dict:
    """What OpenRLHF's remote reward client posts."""
    pairs = [(p, r) for p in PROMPTS for r in REPLIES]
    return {"query": [chatml(p, r) for p, r in pairs], "prompts": [chatml(p) for p, _ in pairs],
            "labels": [""] * len(pairs)}


def score_body() -> dict:
    return {"conversations": [[*p, {"role": "assistant", "content": r}] for p in PROMPTS for r in REPLIES], "step": 3}


NASTY = ["", "\ud800", "\udfff", "a\ud83dz", "\x00", "<|im_start|>", "<|im_end|>", "<|im_start|>assistant\n",
         "<|endoftext|>", "\u202e\u0645\u0631\u062d\u0628\u0627", "😀" * 3, "\r\n", "{{ 7*7 }}", "%s%n", "\\", '"']
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NASTY), st.text(max_size=40),
                    st.sampled_from(["user", "assistant", "system", "robot", "query", "prompts", "conversations"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)


def paths(tree, most: int = 200, deepest: int = 40) -> list[tuple]:
    """Paths to the nodes of a JSON tree, breadth first (the first `most`, at most `deepest` levels)."""
    found, frontier = [], [((), tree)]
    while frontier and len(found) < most:
        path, node = frontier.pop(0)
        found.append(path)
        if len(path) < deepest:
            children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            frontier += [((*path, key), value) for key, value in list(children)[:most]]
    return found


def replace(tree, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: replace(tree[head], rest, new)}
    return [replace(v, rest, new) if i == head else v for i, v in enumerate(tree)]


def get(tree, path):
    for step in path:
        tree = tree[step]
    return tree


MAX_BODY_CHARS = 20 << 20  # a little over the server's 16 MiB body limit: larger bodies test nothing more


def too_big(tree, limit: int = MAX_BODY_CHARS) -> bool:
    """Whether a JSON tree serialises to more than `limit` characters (stops counting once it does)."""
    size, stack = 0, [tree]
    while stack:
        node = stack.pop()
        size += len(node) + 2 if isinstance(node, str) else 8
        if size > limit:
            return True
        if isinstance(node, dict):
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            stack += node
    return False


@st.composite
def mutated_tree(draw, seed):
    tree = seed
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths(tree)))
        node = get(tree, path)
        kind = draw(st.sampled_from(["value", "string", "long", "many", "nest", "drop", "add"]))
        if kind == "value":
            new = draw(json_values)
        elif kind == "string":
            new = "".join(draw(st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=6)))
            if isinstance(node, str) and draw(st.booleans()):
                new = node + new if draw(st.booleans()) else new + node
        elif kind == "long":
            new = draw(st.sampled_from(["x", "é", "😀", "<|im_end|>"])) * draw(st.sampled_from([1000, 70_000, 300_000, 1_100_000]))
        elif kind == "many":
            new = [node] * draw(st.sampled_from([2, 50, 1000, 5000]))
        elif kind == "nest":
            depth = draw(st.sampled_from([2, 30, 600, 2000]))
            new = node
            for _ in range(depth):
                new = [new]
        elif kind == "drop" and isinstance(node, dict) and node:
            new = {k: v for k, v in node.items() if k != draw(st.sampled_from(sorted(node)))}
        elif kind == "add" and isinstance(node, dict):
            new = {**node, draw(st.sampled_from(["step", "query", "prompts", "labels", "conversations", "extra"])): draw(json_values)}
        else:
            new = node
        mutated = replace(tree, path, new)
        if not too_big(mutated):  # composed "long" and "many" mutations would build gigabytes here
            tree = mutated
    return tree


def serialise(tree, ascii_only: bool) -> bytes:
    try:
        text = json.dumps(tree, ensure_ascii=ascii_only, allow_nan=True)
    except RecursionError:
        return b"[" * 5000
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8 bytes


@st.composite
def requests(draw):
    endpoint = draw(st.sampled_from(["/get_reward", "/v1/score"]))
    seed = openrlhf_body() if endpoint == "/get_reward" else score_body()
    if draw(st.integers(0, 19)) == 0:
        seed = score_body() if endpoint == "/get_reward" else openrlhf_body()  # the other endpoint's body
    body = serialise(draw(mutated_tree(seed)), draw(st.booleans()))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # byte mutations
        at = draw(st.integers(0, len(body)))
        how = draw(st.sampled_from(["cut", "flip", "insert"]))
        if how == "cut":
            body = body[:at]
        elif how == "flip" and at < len(body):
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
        else:
            body = body[:at] + draw(st.binary(max_size=8)) + body[at:]
    headers = {"Content-Type": draw(st.sampled_from(["application/json"] * 8 + [
        "application/json; charset=utf-8", "text/plain", "", "application/x-www-form-urlencoded", "APPLICATION/JSON"]))}
    if draw(st.integers(0, 9)) == 0:
        headers["Origin"] = draw(st.sampled_from(["http://evil.example", "null", "http://127.0.0.1", "::::"]))
    if draw(st.integers(0, 19)) == 0:
        headers["Host"] = draw(st.sampled_from(["evil.example", "127.0.0.1.evil.example", "[::1]", "localhost:1"]))
    return endpoint, body, headers


def expected_count(endpoint: str, body: bytes) -> int:
    parsed = json.loads(body)
    return len(parsed["query"] if endpoint == "/get_reward" else parsed["conversations"])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """`workbench serve --log-to-store` on a tiny registered reward model, in its own process."""
    from engine.reward_model import RewardModel
    from tests.tiny import make_tiny_model_dir
    from workbench.models.reward_models import register_reward_model
    from workbench.store import Store

    root = tmp_path_factory.mktemp("fuzz-server")
    rm_dir = RewardModel.from_base(make_tiny_model_dir(root / "base")).save(root / "tiny-rm")
    store = Store(root / "fuzz.duckdb", timeout=20)
    register_reward_model(store, rm_dir, name="tiny")
    port, log_path = free_port(), root / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "workbench", "--db", str(store.path), "serve", "--rm", "tiny",
                                  "--port", str(port), "--log-to-store", "--max-length", "512", "--max-batch-tokens", "4096"],
                                 stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a cold start on a busy machine
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert child.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield {"url": url, "child": child, "log": log_path, "store": store}
    finally:
        if child.poll() is None:
            child.kill()


def test_mutated_requests_never_break_the_server(fuzz_server):
    url, child = fuzz_server["url"], fuzz_server["child"]
    process = psutil.Process(child.pid)
    baseline = process.memory_info().rss
    seen = {"examples": 0, "status": {}, "peak_rss": baseline}
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def one_request(request):
        endpoint, body, headers = request
        with httpx.Client(timeout=120) as client:
            answer = client.post(url + endpoint, content=body, headers=headers)
        seen["examples"] += 1
        seen["status"][answer.status_code] = seen["status"].get(answer.status_code, 0) + 1
        assert answer.status_code < 500, (answer.status_code, answer.text[:300], body[:300], headers)
        if answer.status_code >= 400:
            error = answer.json()["error"]
            assert isinstance(error, str) and "\n" not in error and len(error) < 1000, error[:300]
        else:
            parsed = answer.json()
            scores = parsed["rewards"] if endpoint == "/get_reward" else parsed["scores"]
            assert len(scores) == expected_count(endpoint, body)
        seen["peak_rss"] = max(seen["peak_rss"], process.memory_info().rss)
        assert seen["peak_rss"] - baseline < MEMORY_GROWTH_LIMIT, seen
        if seen["examples"] % 100 == 0:  # progress of a long run (shown with -s)
            print(json.dumps({"examples": seen["examples"], "wall_s": round(time.monotonic() - started),
                              "status": seen["status"], "rss_peak_mb": seen["peak_rss"] >> 20}), flush=True)
        if seen["examples"] % 100 == 0:
            assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"

    one_request()
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["status"] == "ok"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=120)
    log = fuzz_server["log"].read_text()
    wall = time.monotonic() - started
    print(json.dumps({"examples": seen["examples"], "wall_s": round(wall, 1), "status": seen["status"],
                      "rss_baseline_mb": baseline >> 20, "rss_peak_mb": seen["peak_rss"] >> 20,
                      "rollouts_logged": health["rollouts_logged"]}))
    assert child.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "rollout log:" not in log, log[-3000:]
    assert json.loads(out)["requests_served"] == seen["status"].get(200, 0)
