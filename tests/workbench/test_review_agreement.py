"""Agreement figures against the libraries computed independently, and human labels in use:
`pairs build --labels human-first`, the export manifest's `decided_by`, training pairs from the store."""

import json
import math
import random

import krippendorff
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score

from cli import load_commands
from tests.workbench.review_data import PROMPTS, review_template, store, write_votes  # noqa: F401
from workbench.curate.explain import explain_pair
from workbench.curate.pair_filter import PairFilter
from workbench.models.training import pairs_from_store
from workbench.review.agreement import agreement_report, wilson_interval
from workbench.review.queue import fill_queue, next_item, record_label
from workbench.store import queries


def _votes_table(store):
    """{annotator: {item: canonical vote}} read straight from the tables."""
    with store.connect() as con:
        rows = con.execute("""SELECT l.annotator, l.item_id,
                                  CASE WHEN l.preferred_id = i.first_id THEN 'first'
                                       WHEN l.preferred_id = i.second_id THEN 'second' ELSE l.verdict END
                              FROM review_labels l JOIN review_items i USING (item_id)""").fetchall()
    table = {}
    for who, item, vote in rows:
        table.setdefault(who, {})[item] = vote
    return table


def _label_randomly(store, annotators, seed, tmp_path):
    rng = random.Random(seed)
    write_votes(store, "q", {who: "".join(rng.choice("12tb") for _ in range(PROMPTS)) for who in annotators}, tmp_path)


def test_kappa_for_two_annotators_equals_sklearn(store, tmp_path):
    fill_queue(store, "q", "random-audit", size=PROMPTS, overlap=2)
    _label_randomly(store, ["alice", "bob"], 3, tmp_path)
    table = _votes_table(store)
    items = sorted(table["alice"])
    expected = cohen_kappa_score([table["alice"][i] for i in items], [table["bob"][i] for i in items])
    between = agreement_report(store)["between_annotators"]
    assert between["method"] == "cohen_kappa" and between["value"] == pytest.approx(expected, abs=1e-12)


def test_alpha_for_three_annotators_equals_krippendorff(store, tmp_path):
    fill_queue(store, "q", "random-audit", size=PROMPTS, overlap=3)
    _label_randomly(store, ["alice", "bob", "carol"], 5, tmp_path)
    table = _votes_table(store)
    items = sorted(table["alice"])
    codes = {"first": 0, "second": 1, "tie": 2, "both-bad": 3}
    matrix = np.array([[codes[table[w][i]] for i in items] for w in ("alice", "bob", "carol")], dtype=float)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    between = agreement_report(store)["between_annotators"]
    assert between["method"] == "krippendorff_alpha" and between["value"] == pytest.approx(expected, abs=1e-12)
    assert len(between["pairwise"]) == 3


def test_labelers_against_the_human_majority_with_wilson_intervals(store):
    fill_queue(store, "q", "random-audit", size=PROMPTS, overlap=1)
    with store.connect() as con:
        scores = dict(con.execute("""SELECT s.response_id, s.score FROM scores s JOIN reward_models m USING (rm_id)
                                     WHERE m.name = 'rm-a'""").fetchall())
    # the annotator always prefers what rm-a scores lower: rm-a is always wrong, rm-b right where it disagrees
    while (item := next_item(store, "q", "alice")) is not None:
        key = "left" if scores[item.left_id] < scores[item.right_id] else "right"
        record_label(store, item.item_id, "alice", key, item.left_id, item.right_id)
    rows = {(r["labeler"], r["source"]): r for r in agreement_report(store)["labelers"]}
    assert rows["rm-a@1", "all"]["accuracy"] == 0.0 and rows["rm-a@1", "all"]["pairs"] == PROMPTS
    assert rows["rm-b@1", "random-audit"]["correct"] == len(range(0, PROMPTS, 3))
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # the textbook value for 8 of 10
    assert rows["rm-a@1", "all"]["ci95"] == pytest.approx(list(wilson_interval(0, PROMPTS)))
    assert math.isnan(wilson_interval(0, 0)[0])


def test_human_first_flips_and_drops_reward_model_pairs(store, tmp_path):
    fill_queue(store, "q", "lowest-margin", size=4, overlap=1)
    with store.connect() as con:
        pairs = {(p, min(c, r), max(c, r)): (c, r) for p, c, r in
                 con.execute("SELECT prompt_id, chosen_id, rejected_id FROM pairs").fetchall()}
    decided = {}
    for verdict in ("agree", "flip", "tie", "both-bad"):
        item = next_item(store, "q", "alice")
        chosen, rejected = pairs[item.prompt_id, *sorted([item.left_id, item.right_id])]
        key = {"agree": "left" if item.left_id == chosen else "right",
               "flip": "left" if item.left_id == rejected else "right"}.get(verdict, verdict)
        record_label(store, item.item_id, "alice", key, item.left_id, item.right_id)
        decided[verdict] = (chosen, rejected)

    # `explain` on rm-a's flipped pair tells what the reviewer said, in the pair's own terms
    with store.connect() as con:
        flipped_pair = queries.fetch_value(con, "SELECT pair_id FROM pairs WHERE chosen_id = ? AND rejected_id = ?",
                                           list(decided["flip"]))
    votes = explain_pair(store, flipped_pair)["human_votes"]
    assert [(v["annotator"], v["vote"], v["queue"]) for v in votes] == [("alice", "rejected", "q")]

    runner, cli = CliRunner(), load_commands()
    db = ["--db", str(store.path)]
    result = runner.invoke(cli, db + ["pairs", "build", "--rm", "rm-a", "--labels", "human-first", "--json"])
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    assert (built["confirmed"], built["flipped"], built["dropped"]) == (1, 1, 2)
    assert built["rm"] == "human-first(rm-a)@1" and built["candidates"] == PROMPTS - 2
    with store.connect() as con:
        rows = con.execute("""SELECT chosen_id, rejected_id, label_source FROM pairs p JOIN reward_models m USING (rm_id)
                              WHERE m.name = 'human-first(rm-a)'""").fetchall()
    by_replies = {frozenset((c, r)): (c, r, source) for c, r, source in rows}
    assert by_replies[frozenset(decided["agree"])] == (*decided["agree"], "human")
    assert by_replies[frozenset(decided["flip"])] == (*decided["flip"][::-1], "human")
    assert frozenset(decided["tie"]) not in by_replies and frozenset(decided["both-bad"]) not in by_replies
    assert sum(source == "rm" for _, _, source in rows) == PROMPTS - 4

    # training on the human-decided pairs: the flipped pair's chosen reply is the one the human preferred
    train = pairs_from_store(store, PairFilter(rm="human-first(rm-a)", label="human"))
    with store.connect() as con:
        text = dict(con.execute("SELECT response_id, text FROM responses").fetchall())
    assert {(p.chosen, p.rejected) for p in train} == {(text[decided["agree"][0]], text[decided["agree"][1]]),
                                                      (text[decided["flip"][1]], text[decided["flip"][0]])}

    # the export manifest counts who decided each pair
    out = tmp_path / "dpo.jsonl"
    result = runner.invoke(cli, db + ["export", str(out), "--rm", "human-first(rm-a)"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dpo.jsonl.manifest.json").read_text())
    assert manifest["decided_by"] == {"reward model": PROMPTS - 4, "judge": 0, "human": 2}

    # new labels make a new version of the labeler; the old pairs keep theirs
    item = next_item(store, "q", "bob")
    assert item is None  # overlap 1: every item is done
    fill_queue(store, "q2", "random-audit", size=1, seed=7)
    item = next_item(store, "q2", "bob")
    record_label(store, item.item_id, "bob", "both-bad", item.left_id, item.right_id)
    again = json.loads(runner.invoke(cli, db + ["pairs", "build", "--rm", "rm-a", "--labels", "human-first",
                                                "--json"]).stdout)
    assert again["rm"] == "human-first(rm-a)@2"
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM reward_models WHERE name = 'human-first(rm-a)'") == 2


def test_rm_train_from_store_on_human_decided_pairs(store, tmp_path, tiny_model_dir):
    fill_queue(store, "q", "random-audit", size=PROMPTS)
    write_votes(store, "q", {"alice": "12" * (PROMPTS // 2)}, tmp_path)  # a verdict on every pair: all human
    runner, cli = CliRunner(), load_commands()
    db = ["--db", str(store.path), "-q"]
    assert runner.invoke(cli, db + ["pairs", "build", "--rm", "rm-a", "--labels", "human-first"]).exit_code == 0
    result = runner.invoke(cli, db + ["rm", "train", "--from-store", "--pairs-rm", "human-first(rm-a)", "--label",
                                      "human", "--base", str(tiny_model_dir), "--out", str(tmp_path / "rm"),
                                      "--name", "from-people", "--recipe", "full", "--max-steps", "1",
                                      "--pairs-per-step", "4", "--max-length", "64", "--eval-fraction", "0.25",
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train_pairs"] + summary["heldout_pairs"] == PROMPTS
    assert summary["reward_model"]["name"] == "from-people"
