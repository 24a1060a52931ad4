"""`workbench score`'s work list: what a reward model has left is listed once (ids and row numbers)
and each chunk reads its texts by row, falling back to ids when the rows moved."""

import json

import pyarrow as pa
import pytest

from tests.ui.data import make_store
from workbench.generate.scoring import pending_chunks
from workbench.generate.selection import PromptSelection
from workbench.store import queries

RM = "b" * 32


@pytest.fixture
def store(tmp_path):
    store = make_store(tmp_path, prompts=12)
    with store.connect() as con:
        con.execute("INSERT INTO reward_models VALUES (?, 'other', 1, NULL, '{}', NULL, current_timestamp)", [RM])
    return store


def _expected(store, where: str = "true") -> list[tuple]:
    with store.connect() as con:
        return queries.fetch_rows(con, f"""
            SELECT r.response_id, r.prompt_id, r.text, p.messages FROM responses r
            JOIN prompts p USING (prompt_id) WHERE {where} ORDER BY r.response_id""")


def _rows(chunks) -> list[tuple]:
    """The chunks' rows, sorted by response id (chunks come in table order); each row once."""
    rows = [row for chunk in chunks for row in zip(*(chunk[c].to_pylist() for c in
                                                     ("response_id", "prompt_id", "text", "messages")))]
    assert len({r[0] for r in rows}) == len(rows), "a reply came twice"
    return sorted(rows)


def _score(store, response_ids: list[str]) -> None:
    table = pa.table({"response_id": response_ids, "rm_id": [RM] * len(response_ids),
                      "score": [0.5] * len(response_ids), "run_id": ["r"] * len(response_ids)})
    store.write(lambda con: queries.insert_new(con, "scores", table))


def test_every_unscored_reply_comes_once_with_its_text_and_prompt(store):
    chunks = list(pending_chunks(store, RM, PromptSelection(), None, (0, 1), 7))
    expected = _expected(store)
    assert len(expected) > 40 and [c.num_rows for c in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert _rows(chunks) == expected
    assert all(json.loads(m)[-1]["role"] == "user" for *_, m in expected)


def test_scored_replies_are_left_out_and_shards_split_the_rest(store):
    expected = _expected(store)
    _score(store, [r[0] for r in expected[::3]])
    left = [r for i, r in enumerate(expected) if i % 3]
    assert _rows(pending_chunks(store, RM, PromptSelection(), None, (0, 1), 5)) == left
    shards = [_rows(pending_chunks(store, RM, PromptSelection(), None, (rank, 3), 4)) for rank in range(3)]
    assert sorted(r for shard in shards for r in shard) == left and all(shards)


def test_chunks_follow_the_table_order(store):
    with store.connect() as con:
        row_of = dict(queries.fetch_rows(con, "SELECT response_id, rowid FROM responses"))
    listed = [rid for chunk in pending_chunks(store, RM, PromptSelection(), None, (0, 1), 5)
              for rid in chunk["response_id"].to_pylist()]
    assert [row_of[r] for r in listed] == sorted(row_of.values())


def test_a_selection_lists_only_its_prompts(store):
    garden = _rows(pending_chunks(store, RM, PromptSelection(source="garden"), None, (0, 1), 100))
    assert garden == _expected(store, "p.source = 'garden'") and len(garden) == 12


def test_rows_that_moved_after_the_listing_are_found_by_id(store):
    with store.connect() as con:
        listed = queries.unscored_rows(con, RM, {}, None, (0, 1))
    chunks = pending_chunks(store, RM, PromptSelection(), None, (0, 1), 6)
    first = next(chunks)  # the list is taken now, with today's row numbers
    expected = _expected(store)

    def rewrite(con):  # the same rows, in another physical order: the row numbers change
        for table in ("responses", "prompts"):
            con.execute(f"CREATE TEMP TABLE moved AS SELECT * FROM {table} ORDER BY text DESC")
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} SELECT * FROM moved")
            con.execute("DROP TABLE moved")
    store.write(rewrite)
    with store.connect() as con:
        now = dict(queries.fetch_rows(con, "SELECT rowid, response_id FROM responses"))
        same = sum(now.get(row) == rid for rid, row in zip(listed["response_id"].to_pylist(),
                                                            listed["response_row"].to_pylist()))
        assert same < listed.num_rows / 2  # most listed row numbers now hold other replies
        assert _rows([queries.responses_at_rows(con, listed)]) == expected
    assert _rows([first, *chunks]) == expected


def test_insert_new_with_one_reward_model_skips_only_its_stored_scores(store):
    ids = [r[0] for r in _expected(store)][:6]

    def insert(rm: str, chosen: list[str]) -> int:
        table = pa.table({"response_id": chosen, "rm_id": [rm] * len(chosen), "score": [1.0] * len(chosen),
                          "run_id": ["r"] * len(chosen)})
        return store.write(lambda con: queries.insert_new(con, "scores", table, same={"rm_id": rm}))

    assert insert(RM, ids[:4]) == 4
    assert insert(RM, ids[2:]) == 2  # the first writer wins, per (reply, reward model)
    with store.connect() as con:
        ext = queries.fetch_value(con, "SELECT rm_id FROM reward_models WHERE name = 'ext'")
        ext_has = queries.fetch_value(con, "SELECT count(*) FROM scores WHERE rm_id = ? AND response_id = ANY(?)",
                                      [ext, ids])
    assert ext_has and insert(ext, ids) == len(ids) - ext_has  # another model's scores are its own
    mixed = pa.table({"response_id": ids[:2], "rm_id": [RM, ext], "score": [1.0, 1.0], "run_id": ["r", "r"]})
    with pytest.raises(ValueError, match="one value"), store.connect() as con:
        queries.insert_new(con, "scores", mixed, same={"rm_id": RM})
