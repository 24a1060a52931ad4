"""Each way a server can fail gives one clear outcome: retried to success, or one line saying why.

The servers are real HTTP servers on loopback ports (`tests/endpoints/servers.py`) that misbehave
on purpose: garbage, 500s, 429s, slow answers, a wrong API key, a replica that is down.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from engine.data import SamplingParams
from tests.endpoints.conftest import generated, runs
from tests.endpoints.servers import RIGHT_KEY, stand_in
from tests.processes import free_port
from cli import load_commands
from workbench.endpoints.chat import chat_replies
from workbench.endpoints.replicas import EndpointError, ReplicaPool, RetryPolicy
from workbench.endpoints.sampling import ServedModel, sample_from_endpoints
from workbench.generate.selection import PromptSelection

FAST = dict(backoff_s=0.01, max_backoff_s=0.05, cooldown_s=0.2, max_cooldown_s=0.5)
PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=4, seed=3)


def served(url: str, mode: str, **retry) -> ServedModel:
    return ServedModel([f"{url}/{mode}"], None, retry=RetryPolicy(**(FAST | retry)), concurrency=4)


def test_a_server_answering_garbage_is_refused_before_the_run_starts(prompts, stand_in_server):
    url, _ = stand_in_server
    with pytest.raises(EndpointError, match=r"/garbage/v1/models answered something that is not JSON"):
        sample_from_endpoints(prompts, served(url, "garbage"), 2, params=PARAMS, progress=False)
    assert runs(prompts) == [] and generated(prompts) == []


def test_an_answer_without_choices_stops_the_run_with_one_line(prompts, stand_in_server):
    url, _ = stand_in_server
    with pytest.raises(EndpointError, match="answered without choices"):
        sample_from_endpoints(prompts, served(url, "nochoices"), 2, params=PARAMS, progress=False)
    (run,) = runs(prompts)
    assert run["status"] == "failed" and "without choices" in run["error"]


def test_a_server_that_always_answers_500_fails_after_the_attempts(prompts, stand_in_server):
    url, hits = stand_in_server
    before = hits.get("fail500", 0)
    with pytest.raises(EndpointError, match=r"failed 3 times .* HTTP 500"):
        sample_from_endpoints(prompts, served(url, "fail500", max_attempts=3), 2, params=PARAMS,
                              selection=PromptSelection(limit=1), progress=False)
    assert hits["fail500"] - before == 3  # tried 3 times, no more
    assert generated(prompts) == []


def test_500s_and_429s_are_retried_until_every_prompt_has_its_n(prompts, stand_in_server):
    url, _ = stand_in_server
    result = sample_from_endpoints(prompts, served(url, "flaky", max_attempts=5), 3, params=PARAMS, progress=False)
    rows = generated(prompts)
    assert (result.generated, len(rows)) == (12, 12)
    assert sorted({(r["prompt_id"], r["sample_index"]) for r in rows}) == sorted((r["prompt_id"], r["sample_index"])
                                                                                 for r in rows)
    assert result.requests["failures"] == {"http_500": 4, "http_429": 4} and result.requests["retries"] == 8
    assert result.usage["completion_tokens"] == 2 * 12 and result.usage["models"] == ["stand-in-flaky"]


def test_a_slow_server_times_out_with_one_line(prompts, stand_in_server):
    url, _ = stand_in_server
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"failed 2 times .* no answer within 0.3 s"):
        sample_from_endpoints(prompts, served(url, "slow", max_attempts=2, timeout_s=0.3), 1, params=PARAMS,
                              progress=False)
    assert time.monotonic() - started < 4.5  # the 5 s answers were not waited for


def test_a_wrong_api_key_is_one_line_from_the_cli_and_the_key_is_never_recorded(tmp_path, prompts,
                                                                                 stand_in_server, monkeypatch):
    url, _ = stand_in_server
    runner, db = CliRunner(), str(prompts.path)
    args = ["--db", db, "-q", "sample", "--endpoint", f"{url}/auth", "--api-key-env", "POLICY_KEY", "--n", "2",
            "--json"]
    monkeypatch.setenv("POLICY_KEY", "wrong-key")
    result = runner.invoke(load_commands(), args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {url}/auth/v1/models refused the API key (HTTP 401): put the right key in the variable named "
        "by --api-key-env"]
    assert runs(prompts) == []  # refused before a run was recorded
    monkeypatch.setenv("POLICY_KEY", RIGHT_KEY)
    result = runner.invoke(load_commands(), args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generated"] == 8
    (run,) = runs(prompts)
    assert RIGHT_KEY not in json.dumps(run, default=str) and run["config"]  # provenance, but never the key
    config = json.loads(run["config"])
    assert config["served_models"] == ["stand-in-auth"] and config["endpoint"]["authenticated"] is True


def test_a_dead_replica_is_taken_out_and_rejoins_when_it_comes_back():
    dead_port = free_port()
    policy = RetryPolicy(**FAST)
    with stand_in() as (live, live_hits):
        urls = [f"http://127.0.0.1:{dead_port}/ok", f"{live}/ok"]

        async def run(pool: ReplicaPool, count: int):
            await asyncio.gather(*(pool.post("/v1/chat/completions", {"n": 1}) for _ in range(count)))

        async def both_phases():
            async with ReplicaPool(urls, policy=policy) as pool:
                await run(pool, 12)  # every request lands, the dead replica was taken out
                taken_out = pool.stats.taken_out
                with stand_in(dead_port) as (_, back_hits):
                    await asyncio.sleep(policy.max_cooldown_s + 0.1)
                    await run(pool, 12)
                return taken_out, back_hits.get("ok", 0), pool.stats

        taken_out, back, stats = asyncio.run(both_phases())
    assert taken_out >= 1 and stats.failures["connection"] >= 1
    assert live_hits["ok"] >= 12 and back >= 1  # the replica that came back took requests again


def test_chat_replies_gives_judges_text_finish_reason_and_usage(stand_in_server):
    url, _ = stand_in_server
    replies = chat_replies([f"{url}/ok"], "judge", [[{"role": "user", "content": "Which is better?"}]] * 3,
                           policy=RetryPolicy(**FAST))
    assert [(r.text, r.finish_reason, r.usage["completion_tokens"]) for r in replies] == [("ok 0", "stop", 2)] * 3
