"""`workbench round` after a SIGKILL in each phase: the rerun finishes the round with no duplicate
sample, score, pair or policy; prompts a round trained on are refused for evaluation."""

import json
import os

import pytest
from click.testing import CliRunner

from tests.processes import MARKER, kill_when_printed, python, stall_after_insert
from tests.rounds.builders import TINY_DPO, make_round_store
from cli import load_commands

CLI = "from cli import main; import sys; sys.argv = ['workbench', *sys.argv[1:]]; main()"
# Stop once the phase's work is done, before the round records it.
AT_PHASE = """
import time, workbench.dpo.rounds as r
original = r._phase
def stalling(store, number, phase, **values):
    if phase == {phase!r}:
        print({marker!r}, flush=True)
        time.sleep(300)
    return original(store, number, phase, **values)
r._phase = stalling
"""
# Stop inside the trainer's second checkpoint save: the first is complete, the second torn.
# The trainer runs with stdout sent to stderr (engine.dpo), so the marker goes to the real stdout.
IN_SECOND_CHECKPOINT = """
import sys, time, transformers
original = transformers.Trainer._save_checkpoint
calls = {{"n": 0}}
def stalling(self, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 2:
        print({marker!r}, file=sys.__stdout__, flush=True)
        time.sleep(300)
    return original(self, *args, **kwargs)
transformers.Trainer._save_checkpoint = stalling
"""


@pytest.fixture(scope="module")
def killed_round(tmp_path_factory):
    root = tmp_path_factory.mktemp("round")
    store, policy, rm = make_round_store(root, prompts=9)
    argv = ["--db", str(store.path), "-q", "round", "--rm", rm, "--heldout-rm", rm, "--policy", str(policy),
            "--source", "pool", "--prompts", "3", "--eval-prompts", "3", "--n", "3", "--max-new-tokens", "6",
            "--out-root", str(root / "rounds"), *TINY_DPO[2:], "--max-steps", "3"]
    env = {"PYTHONPATH": os.getcwd()}
    for then in (stall_after_insert("responses", 1, CLI),       # mid-sampling
                 stall_after_insert("scores", 1, CLI),          # mid-scoring
                 AT_PHASE.format(phase="paired", marker=MARKER) + CLI,   # pairs built, not yet recorded
                 IN_SECOND_CHECKPOINT.format(marker=MARKER) + CLI,       # mid-DPO
                 stall_after_insert("responses", 1, CLI)):      # mid-evaluation (sampling has nothing left)
        kill_when_printed(python(then, *argv), env=env, timeout=600)
    result = CliRunner().invoke(load_commands(), [*argv, "--json"])
    assert result.exit_code == 0, result.output
    return store, argv, json.loads(result.stdout)  # stdout holds the report alone


@pytest.mark.slow
def test_a_round_killed_in_every_phase_finishes_without_duplicates(killed_round):
    store, _, results = killed_round
    assert results[0]["round"] == 1 and results[0]["policy_out"] == "round-1"
    with store.connect() as con:
        one = lambda sql: con.execute(sql).fetchall()[0]
        assert one("SELECT count(*), count(DISTINCT response_id) FROM responses") == (3 * 3 + 2 * 3, 15)
        assert one("SELECT count(*), count(DISTINCT (response_id, rm_id)) FROM scores") == (15, 15)
        pairs = one("SELECT count(*), count(DISTINCT pair_id) FROM pairs")
        assert pairs[0] == pairs[1] > 0
        assert one("SELECT count(*) FROM policies") == (1,)
        assert one("SELECT count(*), min(status), min(phase) FROM rounds") == (1, "completed", "evaluated")
        assert one("SELECT count(*) FROM round_prompts WHERE role = 'train'") == (3,)
    evaluation = results[0]["evaluation"]
    assert evaluation["prompts"] == 3 and evaluation["reward_hacking"] is False


@pytest.mark.slow
def test_training_prompts_are_refused_for_evaluation_and_fresh_prompts_must_remain(killed_round):
    store, argv, _ = killed_round
    cli = load_commands()
    overlap = CliRunner().invoke(cli, ["--db", str(store.path), "-q", "eval", "policy", "round-1", "--against",
                                       argv[argv.index("--policy") + 1], "--rm", "tiny-rm", "--source", "pool"])
    assert overlap.exit_code == 1 and "were training prompts of round 1" in overlap.output
    more = list(argv)
    more[more.index("--prompts") + 1] = "4"  # 9 prompts: 3 eval + 3 trained leave 3 fresh
    refused = CliRunner().invoke(cli, more)
    assert refused.exit_code == 1 and "only 3 prompts of the pool are fresh" in refused.output
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM rounds").fetchall()[0][0] == 1


@pytest.mark.slow
def test_ablate_trains_both_arms_on_the_same_number_of_pairs_and_compares_them(killed_round, tmp_path):
    from workbench.dpo.policies import lookup_policy

    store, _, _ = killed_round
    result = CliRunner().invoke(load_commands(), [
        "--db", str(store.path), "-q", "ablate", "--round", "1", "--min-margin", "0", "--baseline", "random-pair",
        "--out-root", str(tmp_path), "--max-new-tokens", "6", *TINY_DPO, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the report alone
    assert report["pairs_each"] == min(report["curated_available"], report["baseline_available"]) > 0
    files = {arm: next(tmp_path.glob(f"round-1-*/{arm}.jsonl")) for arm in ("curated", "baseline")}
    assert [len(f.read_text().splitlines()) for f in files.values()] == [report["pairs_each"]] * 2
    curated, baseline = (lookup_policy(store, report["policies"][arm]) for arm in ("curated", "baseline"))
    assert curated["hyper_parameters"] == baseline["hyper_parameters"] and curated["base"] == baseline["base"]
    assert [(c["policy_a"], c["policy_b"]) for c in report["comparisons"]] == [
        (curated["name"], curated["base"]), (baseline["name"], curated["base"]), (curated["name"], baseline["name"])]
