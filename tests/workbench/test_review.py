"""Human review: queue sources, overlap, labels, the users file, export/import and their refusals."""

import json

import pytest
from click.testing import CliRunner

from cli import load_commands
from tests.workbench.review_data import PROMPTS, make_review_store, review_template, store, table_counts  # noqa: F401
from workbench.errors import InputError, NotFound, WorkbenchError
from workbench.review.queue import fill_queue, next_item, record_label, shown_order
from workbench.review.transfer import export_review, import_review
from workbench.review.users import add_user, check_password, read_users
from workbench.store import queries


def _label_all(store, queue, annotator, key="left"):
    n = 0
    while (item := next_item(store, queue, annotator)) is not None:
        record_label(store, item.item_id, annotator, key, item.left_id, item.right_id)
        n += 1
    return n


def test_sources_fill_queues_and_judge_sources_say_why_they_are_empty(store):
    low = fill_queue(store, "q", "lowest-margin", size=4)
    assert low.added == 4
    with store.connect() as con:
        margins = [abs(m) for (m,) in con.execute(
            "SELECT p.margin FROM review_items i JOIN pairs p USING (pair_id) ORDER BY i.position").fetchall()]
        all_margins = sorted(abs(m) for (m,) in con.execute("SELECT margin FROM pairs").fetchall())
    assert margins == all_margins[:4]
    # rm-b reverses every third prompt: exactly those rm-a pairs are disputed
    disagree = fill_queue(store, "d", "rm-disagreement", size=100)
    assert disagree.added == len(range(0, PROMPTS, 3))
    audit = fill_queue(store, "a", "random-audit", size=5, seed=1)
    again = fill_queue(store, "a", "random-audit", size=100, seed=1)
    assert audit.added == 5 and again.added == PROMPTS - 5  # pairs already queued are not added twice
    for source in ("judge-vs-rm", "judge-inconsistent"):
        result = fill_queue(store, "j", source, size=5)
        assert result.added == 0 and "no LLM judge" in result.note
    with pytest.raises(WorkbenchError, match="unknown queue source"):
        fill_queue(store, "q", "everything", size=5)


def test_overlap_shows_each_item_to_k_annotators_never_twice_to_one(store):
    fill_queue(store, "q", "random-audit", size=3, overlap=2)
    assert _label_all(store, "q", "alice") == 3
    assert next_item(store, "q", "alice") is None  # never twice to one annotator
    first = next_item(store, "q", "bob")
    with pytest.raises(WorkbenchError, match="already labelled"):
        record_label(store, first.item_id, "alice", "tie", first.left_id, first.right_id)
    assert _label_all(store, "q", "bob", "tie") == 3
    assert next_item(store, "q", "carol") is None  # every item has its 2 labels
    # a skip is stored (not shown again) but is no vote: the item stays open for others
    fill_queue(store, "s", "random-audit", size=1, overlap=1)
    item = next_item(store, "s", "dave")
    record_label(store, item.item_id, "dave", "skip", item.left_id, item.right_id)
    assert next_item(store, "s", "dave") is None and next_item(store, "s", "erin").item_id == item.item_id


def test_labels_keep_annotator_time_and_shown_order(store):
    fill_queue(store, "q", "random-audit", size=PROMPTS)
    orders = []
    while (item := next_item(store, "q", "alice")) is not None:
        assert (item.left_id, item.right_id) == shown_order(item.item_id, "alice", *sorted([item.left_id, item.right_id]))
        orders.append(item.left_id < item.right_id)
        record_label(store, item.item_id, "alice", "right", item.left_id, item.right_id, note="  why  ")
    assert 0 < sum(orders) < len(orders)  # both orders occur
    with store.connect() as con:
        rows = con.execute("SELECT annotator, verdict, preferred_id = right_id, note, labeled_at IS NOT NULL "
                           "FROM review_labels").fetchall()
    assert rows == [("alice", "better", True, "why", True)] * PROMPTS


def test_a_label_for_an_unknown_item_is_refused_and_changes_nothing(store):
    before = table_counts(store)
    with pytest.raises(NotFound, match="no review item 'nope'"):
        record_label(store, "nope", "alice", "left", "a", "b")
    assert table_counts(store) == before


def test_users_file_hashes_and_bad_lines(tmp_path):
    path = tmp_path / "users.txt"
    assert add_user(path, "alice", "s3cret") and add_user(path, "bob", "hunter2")
    assert not add_user(path, "alice", "changed")  # a new password replaces the line
    users = read_users(path)
    assert set(users) == {"alice", "bob"} and "s3cret" not in path.read_text()
    assert check_password(users, "alice", "changed") and not check_password(users, "alice", "s3cret")
    assert not check_password(users, "mallory", "changed")
    result = CliRunner().invoke(load_commands(), ["review", "add-user", str(path), "carol"], input="pw-c\npw-c\n")
    assert result.exit_code == 0 and check_password(read_users(path), "carol", "pw-c")
    text = path.read_text()
    path.write_text("# annotators\n" + text + "carol:plaintext\n")
    with pytest.raises(InputError) as error:
        read_users(path)
    assert str(error.value).startswith(f"{path}:5: ")
    result = CliRunner().invoke(load_commands(), ["ui", "--users", str(path), "--port", "1"])
    assert result.exit_code == 1 and f"{path}:5:" in result.output and "Traceback" not in result.output


def test_export_then_import_round_trips_labels(store, tmp_path):
    fill_queue(store, "q", "random-audit", size=4, overlap=2)
    _label_all(store, "q", "alice")
    out = tmp_path / "q.jsonl"
    exported = export_review(store, out, "q")
    assert (exported.items, exported.labels) == (4, 4)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # labelled elsewhere: bob's labels added in the file come back
    for line in lines:
        first, second = line["first"]["response_id"], line["second"]["response_id"]
        line["labels"].append({"annotator": "bob", "verdict": "better", "preferred_id": second, "left_id": first,
                               "right_id": second, "note": "from another tool", "labeled_at": None})
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = import_review(store, out)
    assert (result.items, result.labels, result.new_items) == (4, 8, 0)
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM review_labels WHERE annotator = 'bob'") == 4


def test_imports_from_another_store_or_for_an_unknown_pair_are_refused(store, tmp_path):
    other = make_review_store(tmp_path, "other.duckdb")
    fill_queue(other, "q", "random-audit", size=2)
    _label_all(other, "q", "alice")
    foreign = tmp_path / "foreign.jsonl"
    export_review(other, foreign)
    before = table_counts(store)
    with pytest.raises(InputError, match="exported from another store") as error:
        import_review(store, foreign)
    assert str(error.value).startswith(f"{foreign}:1: ")
    assert table_counts(store) == before

    fill_queue(store, "q", "random-audit", size=3)
    _label_all(store, "q", "alice")
    mine = tmp_path / "mine.jsonl"
    export_review(store, mine)
    lines = mine.read_text().splitlines()
    broken = json.loads(lines[2])
    broken["pair_id"] = "0" * 32
    mine.write_text("\n".join(lines[:2] + [json.dumps(broken)]) + "\n")
    before = table_counts(store)
    result = CliRunner().invoke(load_commands(), ["--db", str(store.path), "review", "import", str(mine)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{mine}:3: pair_id: no pair '{'0' * 32}' in this store" in result.output
    assert table_counts(store) == before


def test_cli_fills_a_queue_and_reports_agreement(store):
    runner, cli = CliRunner(), load_commands()
    db = ["--db", str(store.path)]
    result = runner.invoke(cli, db + ["review", "queue", "--source", "random-audit", "--size", "6", "--overlap", "2",
                                      "--queue", "audit", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 6
    _label_all(store, "audit", "alice", "left")
    _label_all(store, "audit", "bob", "right")
    result = runner.invoke(cli, db + ["agreement", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["between_annotators"]["method"] == "cohen_kappa"
    assert {row["labeler"] for row in report["labelers"]} <= {"rm-a@1", "rm-b@1"}
    listed = json.loads(runner.invoke(cli, db + ["review", "list", "--json"]).stdout)
    assert listed == [{"queue": "audit", "items": 6, "labels": 12, "open": 0}]


def _add_judge(store, tmp_path):
    """A labeler of kind judge (as `workbench judge` registers one) whose scores reverse rm-a's on every
    fourth prompt, and two recorded pairwise verdicts of it, one position-inconsistent."""
    from tests.workbench.review_data import _bon
    from workbench.ingest.importer import import_files

    import_files(store, [_bon(tmp_path, "judge-x", 4)], fmt="bon", source="qa", score_name="judge-x", progress=False)
    with store.connect() as con:
        con.execute("""UPDATE reward_models SET config = json_merge_patch(config, '{"kind": "judge"}')
                       WHERE name = 'judge-x'""")
        # the judges' table, as `workbench judge` creates it (IF NOT EXISTS: a store that has it keeps it)
        con.execute("""CREATE TABLE IF NOT EXISTS judge_pair_verdicts (rm_id VARCHAR NOT NULL, prompt_id VARCHAR NOT NULL,
            response_a VARCHAR NOT NULL, response_b VARCHAR NOT NULL, p_a_first DOUBLE, p_a_second DOUBLE,
            p_a_better DOUBLE, consistent BOOLEAN, answer_a_first VARCHAR, answer_a_second VARCHAR,
            run_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, PRIMARY KEY (rm_id, response_a, response_b))""")
        con.execute("""INSERT INTO judge_pair_verdicts (rm_id, prompt_id, response_a, response_b, consistent, run_id,
                                                        created_at)
            SELECT m.rm_id, p.prompt_id, least(p.chosen_id, p.rejected_id), greatest(p.chosen_id, p.rejected_id),
                   row_number() OVER (ORDER BY p.pair_id) = 1, 'test', current_timestamp
            FROM (SELECT * FROM pairs ORDER BY pair_id LIMIT 2) p, reward_models m WHERE m.name = 'judge-x'""")


def test_judge_sources_use_labelers_of_kind_judge(store, tmp_path):
    _add_judge(store, tmp_path)
    assert fill_queue(store, "j", "judge-vs-rm", size=100).added == len(range(0, PROMPTS, 4))
    # two reward models disagreeing: the judge does not count as one
    assert fill_queue(store, "d", "rm-disagreement", size=100).added == len(range(0, PROMPTS, 3))
    inconsistent = fill_queue(store, "i", "judge-inconsistent", size=100)
    assert inconsistent.added == 1
    with store.connect() as con:
        expected = con.execute("""SELECT response_a, response_b FROM judge_pair_verdicts WHERE NOT consistent""").fetchall()
        got = con.execute("SELECT first_id, second_id FROM review_items WHERE queue = 'i'").fetchall()
    assert got == expected
    from workbench.review.agreement import agreement_report

    assert agreement_report(store)["judge_position_consistency"] == [
        {"judge": "judge-x@1", "pairs": 2, "consistency": 0.5}]
