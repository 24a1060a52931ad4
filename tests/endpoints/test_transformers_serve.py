"""Sampling from real `transformers serve` processes (the tiny model, two replicas on loopback ports).

`transformers serve` ignores `n` (one choice per request): the client asks again until every prompt
holds exactly N. One replica is killed mid-run: the run goes on over the other, and no sample is
stored twice. Both servers start once for the module, in parallel.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from engine.data import SamplingParams
from tests.endpoints.conftest import generated, runs, store_with_prompts
from tests.endpoints.servers import kill, transformers_serve, wait_until_ready
from workbench.endpoints.replicas import RetryPolicy
from workbench.endpoints.sampling import ServedModel, sample_from_endpoints

PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=6, seed=11)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Two `transformers serve` processes on the same tiny model directory: (model dir, [url, url], processes)."""
    from tests.tiny import make_tiny_model_dir

    base = tmp_path_factory.mktemp("served")
    model = make_tiny_model_dir(base / "tiny-policy")
    started = [transformers_serve(model, base / f"serve-{i}.log") for i in range(2)]
    try:
        for i, (process, url) in enumerate(started):
            wait_until_ready(process, url, base / f"serve-{i}.log")
        yield model, [url for _, url in started], [process for process, _ in started]
    finally:
        for process, _ in started:
            kill(process)


def _count(con) -> int:
    return con.execute("SELECT count(*) FROM responses WHERE origin = 'generated'").fetchone()[0]


def _per_prompt(rows) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["prompt_id"], []).append(row["sample_index"])
    return found


def test_n_samples_per_prompt_from_a_server_that_ignores_n_and_a_rerun_stores_none_twice(replicas, tmp_path):
    model, urls, _ = replicas
    store = store_with_prompts(tmp_path, 4)
    served = ServedModel(urls[:1], None, concurrency=4)
    result = sample_from_endpoints(store, served, 3, params=PARAMS, progress=False)
    rows = generated(store)
    assert (result.generated, len(rows)) == (12, 12)
    assert all(indexes == [0, 1, 2] for indexes in _per_prompt(rows).values()) and len(_per_prompt(rows)) == 4
    assert result.usage["short_answers"] >= 4  # one choice per request: it asked again for the rest
    assert result.usage["completion_tokens"] == sum(r["n_tokens"] for r in rows) > 0
    assert all(r["flag_truncated"] == (r["finish_reason"] == "length") for r in rows)
    (run,) = runs(store)
    config = json.loads(run["config"])
    assert config["served_models"] == [str(model)] and config["params"]["max_new_tokens"] == 6
    assert config["policy"] == {"endpoint_model": str(model), "api": "chat"}
    again = sample_from_endpoints(store, served, 3, params=PARAMS, progress=False)
    assert (again.run_id, again.generated, again.existing) == (result.run_id, 0, 12)
    assert generated(store) == rows


def test_completions_api_with_text_prompts_rendered_by_the_chat_template(replicas, tmp_path):
    model, urls, _ = replicas
    store = store_with_prompts(tmp_path, 2)
    served = ServedModel(urls[:1], str(model), api="completions", prompt_template=str(model), concurrency=2)
    result = sample_from_endpoints(store, served, 2, params=PARAMS, progress=False)
    assert result.generated == 4 and len(generated(store)) == 4
    assert json.loads(runs(store)[0]["config"])["policy"]["api"] == "completions"


def test_two_replicas_one_killed_mid_run_every_prompt_ends_with_exactly_n(replicas, tmp_path):
    model, urls, processes = replicas
    store = store_with_prompts(tmp_path, 12)
    served = ServedModel(urls, str(model), concurrency=4,
                         retry=RetryPolicy(timeout_s=60, backoff_s=0.05, cooldown_s=5, max_cooldown_s=30))
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = sample_from_endpoints(store, served, 3, params=PARAMS, flush_every=2, progress=False)
        except BaseException as error:  # surfaced below
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    # counted under the store's write lock: two threads of one process must not open the file at once
    while store.write(_count) < 6 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    kill(processes[1])
    thread.join(600)
    assert "error" not in outcome, outcome.get("error")
    result, rows = outcome["result"], generated(store)
    assert result.total == 36 and len(rows) == 36
    per_prompt = _per_prompt(rows)
    assert len(per_prompt) == 12 and all(indexes == [0, 1, 2] for indexes in per_prompt.values())
    assert result.requests["taken_out"] >= 1 and result.requests["failures"].get("connection", 0) >= 1
