"""Sharded scoring: several processes score one store, each its share; every score lands exactly once.

Two `workbench score --shard R/2` processes run at once on the same DuckDB file (the store's
retries and short transactions take turns on its one-writer lock); a shard killed mid-write is
rerun and completes without duplicates; under torchrun each process takes the shard of its rank.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.distributed.common import ROOT, env, torchrun
from tests.processes import kill_when_printed, python, stall_after_insert
from tests.workbench.conftest import write_jsonl
from workbench.store import Store, queries

pytestmark = pytest.mark.distributed

N_PROMPTS, N_REPLIES = 12, 4


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from engine.reward_model import RewardModel
    from tests.engine.helpers import sharpen_value_head
    from tests.tiny import make_tiny_model_dir

    root = tmp_path_factory.mktemp("scoring")
    return sharpen_value_head(RewardModel.from_base(make_tiny_model_dir(root / "tiny"))).save(root / "rm")


@pytest.fixture
def store(tmp_path, rm_dir) -> Store:
    from workbench.ingest.importer import import_files
    from workbench.models.reward_models import register_reward_model

    store = Store(tmp_path / "s.duckdb", timeout=60)
    records = [{"prompt": f"Prompt {i}: tell me about the number {i}.",
                "responses": [f"Reply {j} to {i}: " + "it is a number. " * (1 + (i + j) % 4) for j in range(N_REPLIES)]}
               for i in range(N_PROMPTS)]
    import_files(store, [write_jsonl(tmp_path / "r.jsonl", records)], source="demo", progress=False)
    register_reward_model(store, rm_dir, name="rm")
    return store


def _stored_scores(store: Store) -> list[dict]:
    with store.connect() as con:
        return queries.fetch_dicts(con, "SELECT response_id, score, run_id FROM scores")


def _assert_complete_and_correct(store: Store, rm_dir) -> None:
    """Every response scored exactly once, with the score one process computes alone."""
    from engine.data import ScoringItem
    from engine.reward_model import RewardModel
    from engine.scoring import Scorer

    rows = _stored_scores(store)
    assert len(rows) == N_PROMPTS * N_REPLIES
    assert len({r["response_id"] for r in rows}) == len(rows)
    with store.connect() as con:
        responses = queries.fetch_dicts(con, "SELECT r.response_id, r.text, p.messages FROM responses r "
                                       "JOIN prompts p ON p.prompt_id = r.prompt_id ORDER BY r.response_id")
        run = queries.get_run(con, rows[0]["run_id"])
    expected = Scorer(RewardModel.load(rm_dir)).score([ScoringItem(json.loads(r["messages"]), r["text"])
                                                       for r in responses])
    got = {r["response_id"]: r["score"] for r in rows}
    assert [got[r["response_id"]] for r in responses] == pytest.approx(expected, abs=1e-5)
    assert len({r["run_id"] for r in rows}) == 1 and run["status"] == "completed"


def _score_command(store: Store, *args: str) -> list[str]:
    return [sys.executable, "-m", "workbench", "--db", str(store.path), "-q", "score", "--rm", "rm",
            "--precision", "fp32", *args]


def test_two_processes_score_their_shards_at_once_completely_and_without_duplicates(store, rm_dir):
    procs = [subprocess.Popen(_score_command(store, "--shard", f"{r}/2", "--json"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT) for r in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    scored = [json.loads(out)["scored"] for out, _ in outputs]
    assert sum(scored) == N_PROMPTS * N_REPLIES and min(scored) > 0  # both shards did a share
    _assert_complete_and_correct(store, rm_dir)


_SCORE_SHARD_1 = """
from workbench.generate.scoring import score_responses
from workbench.store import Store
score_responses(Store(sys.argv[1]), "rm", shard=(1, 2), chunk_size=4, precision="fp32", progress=False)
"""


def test_a_shard_killed_mid_write_is_rerun_to_completion_without_duplicates(store, rm_dir):
    from workbench.generate.scoring import score_responses

    # chunk 1 is committed, chunk 2 is inside its open transaction
    kill_when_printed(python(stall_after_insert("scores", 2, _SCORE_SHARD_1), str(store.path)), env=env(), cwd=ROOT)
    assert len(_stored_scores(store)) == 4  # the first chunk survived, the second was rolled back
    rerun = score_responses(store, "rm", shard=(1, 2), precision="fp32", progress=False)
    other = score_responses(store, "rm", shard=(0, 2), precision="fp32", progress=False)
    assert rerun.already_scored == 4 and rerun.scored > 0 and other.scored > 0
    assert 4 + rerun.scored + other.scored == N_PROMPTS * N_REPLIES
    _assert_complete_and_correct(store, rm_dir)


def test_torchrun_processes_take_the_shard_of_their_rank(store, rm_dir):
    output = torchrun(["-m", "workbench", "--db", str(store.path), "-q", "score", "--rm", "rm",
                       "--precision", "fp32"])
    counts = {}
    for line in output.splitlines():
        if line.startswith("Scored ") and "(shard " in line:
            counts[line.split("(shard ")[1].split(")")[0]] = int(line.split()[1])
    assert set(counts) == {"0/2", "1/2"} and min(counts.values()) > 0, output
    assert sum(counts.values()) == N_PROMPTS * N_REPLIES
    _assert_complete_and_correct(store, rm_dir)
