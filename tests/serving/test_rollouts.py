"""`serve --log-to-store`: rollouts land in the store after a clean stop and survive a SIGKILL whole."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import httpx

from tests.processes import MARKER, free_port, python, stall_after_insert
from tests.serving.conftest import running_server, wait_until
from workbench.serving.config import ServeConfig
from workbench.serving.status import server_lines


def conversations(tag: str, n: int, prompts: int = 2):
    return [[{"role": "user", "content": f"{tag} prompt {i % prompts}"}, {"role": "assistant", "content": f"{tag} reply {i}"}]
            for i in range(n)]


def rollout_summary(con) -> dict:
    """How many rollout runs and rollout replies the store holds."""
    runs, replies = con.execute("""
        SELECT count(DISTINCT r.run_id), count(s.response_id) FROM runs r
        LEFT JOIN responses s ON s.run_id = r.run_id WHERE r.kind = 'rollout'""").fetchall()[0]
    return {"runs": int(runs), "rollouts": int(replies)}


def store_rows(store):
    with store.connect() as con:
        return {
            "responses": con.execute("SELECT response_id, text, run_id FROM responses ORDER BY text").fetchall(),
            "scores": con.execute("SELECT response_id, score FROM scores").fetchall(),
            "runs": con.execute("SELECT run_id, status, config, summary FROM runs WHERE kind = 'rollout'").fetchall(),
            "prompts": con.execute("SELECT prompt_id, source FROM prompts").fetchall(),
        }


def test_rollouts_are_stored_on_a_clean_stop_and_feed_browse_pairs_and_export(store, tmp_path):
    from workbench.curate.browse import PromptQuery, prompt_detail, prompt_page
    from workbench.exports.export import export_pairs
    from workbench.curate.pair_filter import PairFilter
    from workbench.curate.pairs import build_pairs

    with running_server(store, ServeConfig(log_to_store=True)) as (url, server, _):
        with httpx.Client(timeout=30) as client:
            by_step = {}
            for step in (1, 2):
                answer = client.post(f"{url}/v1/score", json={"conversations": conversations(f"s{step}", 4), "step": step})
                by_step[step] = answer.json()["scores"]
            full = "<|im_start|>user\nopenrlhf prompt<|im_end|>\n<|im_start|>assistant\nan answer<|im_end|>"
            openrlhf = client.post(f"{url}/get_reward", json={"query": [full], "labels": [""]}).json()["rewards"]
            wait_until(lambda: "3 requests served, 9 rollouts logged" in server_lines(store.path))
    assert server_lines(store.path) == "" and not server.status_path.exists()  # removed on a clean stop
    rows = store_rows(store)
    assert len(rows["responses"]) == len(rows["scores"]) == 9
    assert len({r[0] for r in rows["responses"]}) == 9  # no duplicate
    runs = {json.loads(config)["step"]: (status, json.loads(summary)) for _, status, config, summary in rows["runs"]}
    assert runs == {1: ("completed", {"rollouts": 4}), 2: ("completed", {"rollouts": 4}), None: ("completed", {"rollouts": 1})}
    scores = dict(rows["scores"])
    texts = {text: scores[rid] for rid, text, _ in rows["responses"]}
    assert [texts[f"s1 reply {i}"] for i in range(4)] == by_step[1] and texts["an answer"] == openrlhf[0]
    assert {source for _, source in rows["prompts"]} == {"rollout"} and len(rows["prompts"]) == 5

    page = prompt_page(store, PromptQuery(source="rollout"))  # Browse
    assert page.total == 5
    detail = prompt_detail(store, page.rows["prompt_id"].iloc[0])
    assert all(r["scores"] for r in detail["responses"])
    built = build_pairs(store, "tiny", "best-vs-worst", source="rollout", progress=False)
    assert built.new_pairs == 4  # the 4 prompts with two replies
    exported = export_pairs(store, tmp_path / "dpo.jsonl", pair_filter=PairFilter(source="rollout"))
    assert exported.rows == 4


def test_sigkill_loses_at_most_the_unwritten_batch_and_never_leaves_part_of_one(store, tmp_path):
    port = free_port()
    serve = (f"from cli import main; sys.argv = ['workbench', '--db', {str(store.path)!r}, 'serve', "
             f"'--rm', 'tiny', '--port', '{port}', '--log-to-store']; main()")
    # the child stops inside the transaction of its second batch, after that batch's scores went in
    child = subprocess.Popen(python(stall_after_insert("scores", 2, serve)), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={"PYTHONUNBUFFERED": "1", **_env()})
    stalled = threading.Event()
    threading.Thread(target=lambda: [stalled.set() for line in child.stdout if MARKER in line], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_until(lambda: httpx.get(f"{url}/health", timeout=5).json(), timeout=120)
        assert health["log_to_store"]
        first = conversations("first", 3)
        assert httpx.post(f"{url}/v1/score", json={"conversations": first, "step": 7}, timeout=30).status_code == 200
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).json()["rollouts_logged"] == 3 or None)
        assert httpx.post(f"{url}/v1/score", json={"conversations": conversations("second", 2)},
                          timeout=30).status_code == 200
        assert stalled.wait(60), "the second batch never reached its scores insert"
        assert "RM server** tiny@1" in server_lines(store.path)  # the app's Overview sees it
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert list(tmp_path.glob("*.rm-server-*.json")) and server_lines(store.path) == ""  # stale file ignored
    finally:
        if child.poll() is None:
            child.kill()
    rows = store_rows(store)
    assert sorted(text for _, text, _ in rows["responses"]) == [f"first reply {i}" for i in range(3)]
    assert {rid for rid, _ in rows["scores"]} == {rid for rid, _, _ in rows["responses"]}  # no reply without its score
    assert [(json.loads(c)["step"], status) for _, status, c, _ in rows["runs"]] == [(7, "running")]  # killed mid-run
    with store.connect() as con:
        assert rollout_summary(con) == {"runs": 1, "rollouts": 3}

    # a new server logs the lost batch again as its own rollouts: nothing doubled, nothing missing
    with running_server(store, ServeConfig(log_to_store=True)) as (url, _, _):
        httpx.post(f"{url}/v1/score", json={"conversations": conversations("second", 2)}, timeout=30)
    rows = store_rows(store)
    assert sorted(text for _, text, _ in rows["responses"]) == [f"first reply {i}" for i in range(3)] + \
        [f"second reply {i}" for i in range(2)]
    assert len({rid for rid, _ in rows["scores"]}) == len(rows["scores"]) == 5


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])}



def test_identical_rollout_replies_are_flagged_as_duplicates(store):
    """Two identical replies to one prompt in one step carry the near-duplicate flag, as sampled
    replies do; the flag also reaches a copy that arrives in a later batch."""
    same = [{"role": "user", "content": "dup prompt"}, {"role": "assistant", "content": "The same  reply."}]
    other = [{"role": "user", "content": "dup prompt"}, {"role": "assistant", "content": "Something else entirely."}]
    later = [same[0], {"role": "assistant", "content": "the same reply."}]  # case and spacing differ
    with running_server(store, ServeConfig(log_to_store=True)) as (url, server, _):
        with httpx.Client(timeout=30) as client:
            client.post(f"{url}/v1/score", json={"conversations": [same, other, same], "step": 7})
            wait_until(lambda: "3 rollouts logged" in server_lines(store.path))
            client.post(f"{url}/v1/score", json={"conversations": [later], "step": 7})
            wait_until(lambda: "4 rollouts logged" in server_lines(store.path))
    with store.connect() as con:
        rows = con.execute("SELECT response_id, flag_near_duplicate_of FROM responses ORDER BY sample_index").fetchall()
    first = rows[0][0]
    assert [flag for _, flag in rows] == [None, None, first, first]
