"""The bulk lane (DuckDB) stores exactly what the exact lane (Python) stores, or hands over to it."""

import json
import random

import duckdb
import orjson
import pytest

from tests.processes import kill_when_printed, python
from tests.workbench.conftest import table_counts, write_jsonl
from workbench import ids
from workbench.errors import InputError
from workbench.ingest.importer import import_files
from workbench.store import Store, bulk_import, content_ids, queries

TABLES = {
    "prompts": "prompt_id, messages, text, source, tags, run_id, source_line",
    "responses": "response_id, prompt_id, text, origin, run_id, sample_index, n_chars, n_tokens, source_line",
    "scores": "response_id, rm_id, score, run_id",
    "reward_models": "rm_id, name, version, path, config, run_id",
}


def dump(store: Store) -> dict:
    with store.connect() as con:
        return {t: queries.fetch_rows(con, f"SELECT {cols} FROM {t} ORDER BY ALL") for t, cols in TABLES.items()}


def lanes_used(store: Store) -> list[str]:
    with store.connect() as con:
        return [json.loads(s).get("lane", "exact") for (s,) in
                queries.fetch_rows(con, "SELECT summary FROM runs WHERE kind = 'import' ORDER BY started_at")]


def import_both(tmp_path, paths, **kwargs):
    """Import into two fresh stores, through the bulk lane and through the exact lane alone."""
    outcomes = []
    for bulk in (True, False):
        store = Store(tmp_path / f"{'bulk' if bulk else 'exact'}.duckdb", timeout=10)
        try:
            result = import_files(store, paths, progress=False, bulk=bulk, **kwargs)
            outcomes.append((store, result, None))
        except InputError as error:
            outcomes.append((store, None, str(error)))
    return outcomes


def test_blank_matches_python_isspace_for_every_code_point():
    con = duckdb.connect()
    found = {c for (c,) in con.execute(
        "SELECT c FROM (SELECT range AS c FROM range(55296) UNION ALL SELECT range FROM range(57344, 1114112)) "
        f"WHERE regexp_full_match(chr(c::INTEGER), '{bulk_import.BLANK}')").fetchall()}
    assert found == {c for c in range(0x110000) if chr(c).isspace()}
    assert con.execute(f"SELECT regexp_full_match('', '{bulk_import.BLANK}')").fetchall() == [(True,)]


TRICKY = ["plain", "two\nlines", "nul\x00inside", "e\u0301 combining", "astral \U0001f600", "quote \" back \\",
          "\u2028 separator", "tab\tand\r", "日本語", " ", "prompt 7\nuser 3"]


@pytest.mark.parametrize("text", TRICKY)
def test_sql_content_ids_equal_the_python_ones(text):
    con = duckdb.connect()
    messages = [{"role": "system", "content": text}, {"role": "user", "content": text + "?"}]
    got = con.execute(
        f"SELECT {content_ids.prompt_id_of_user_text('$t')}, {content_ids.imported_response_id('$p', '$t')}, "
        f"{content_ids.generated_response_id('$r', '$p', '$i')}, {content_ids.pair_id('$l', '$t', '$p', '$r')}, "
        f"{content_ids.prompt_id_of_messages('CAST($m::JSON AS STRUCT(role VARCHAR, content VARCHAR)[])')}",
        {"t": text, "p": "a" * 32, "r": "b" * 32, "i": 3, "l": "human", "m": ids.canonical_messages(messages)},
    ).fetchall()[0]
    assert got == (ids.prompt_id([{"role": "user", "content": text}]), ids.imported_response_id("a" * 32, text),
                   ids.generated_response_id("b" * 32, "a" * 32, 3), ids.pair_id("human", text, "a" * 32, "b" * 32),
                   ids.prompt_id(messages))


def test_duckdb_escapes_json_strings_like_orjson_outside_the_handed_over_characters():
    """The bulk lane writes prompt messages with DuckDB's to_json, the exact lane with orjson."""
    con = duckdb.connect()
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    to_json = dict(con.execute("SELECT c, to_json(c) FROM unnest($c) t(c)", {"c": chars}).fetchall())
    differ = {c for c in chars if to_json[c] != orjson.dumps(c).decode()}
    handed_over = {c for (c,) in con.execute(
        f"SELECT c FROM unnest($c) t(c) WHERE regexp_matches(c, '{bulk_import.JSON_HEX_ESCAPED}')", {"c": chars}
    ).fetchall()}
    assert differ and differ == handed_over


def _records():
    return [
        {"prompt": "Say hi", "responses": ["hi", "hello", "hey"], "scores": [1.0, 2, -0.5]},
        {"prompt": "Say hi", "responses": ["hello", "yo"], "scores": [9.0, 3.0]},  # a prompt again: first line wins
        {"prompt": "Twice", "responses": ["same", "same", "other"], "scores": [1.0, 2.0, None]},
        {"prompt": "Tagged  ", "responses": ["x"], "tags": ["b", "a", "b"]},
        {"prompt": "Unscored \u2028 \U0001f600", "responses": ["e\u0301", "line\nbreak"], "scores": None},
        {"prompt": "Big numbers", "responses": ["a", "b"], "scores": [18446744073709551616, -3]},
        {"prompt": "Empty tags", "responses": ["z"], "tags": []},
    ]


def test_both_lanes_store_the_same_rows(tmp_path):
    first = write_jsonl(tmp_path / "one.jsonl", _records())
    second = write_jsonl(tmp_path / "two.jsonl", [{"prompt": "Say hi", "responses": ["hi", "new"],
                                                    "scores": [5.0, 6.0]}])
    (bulk_store, bulk, _), (exact_store, exact, _) = import_both(tmp_path, [first, second], fmt="auto",
                                                                 score_name="ext", tags=["t"])
    assert lanes_used(bulk_store) == ["bulk"] and lanes_used(exact_store) == ["exact"]
    assert dump(bulk_store) == dump(exact_store)
    assert (bulk.new_prompts, bulk.new_responses, bulk.new_scores) == (exact.new_prompts, exact.new_responses,
                                                                        exact.new_scores) == (6, 13, 8)
    assert bulk.records == exact.records == 8
    with bulk_store.connect() as con:  # the first occurrence of a reply keeps its score and index
        assert queries.fetch_rows(con, "SELECT r.sample_index, s.score FROM responses r JOIN scores s USING (response_id) "
                                 "WHERE r.text = 'hello'") == [(1, 2.0)]

    # importing into a store that already holds some of it adds the same rows in both lanes
    more = write_jsonl(tmp_path / "more.jsonl", _records()[:3] + [{"prompt": "Fresh", "responses": ["f"]}])
    for store, bulk_lane in ((bulk_store, True), (exact_store, False)):
        result = import_files(store, [more], fmt="bon", score_name="ext", progress=False, bulk=bulk_lane)
        assert (result.new_prompts, result.new_responses, result.new_scores) == (1, 1, 0)
    assert dump(bulk_store) == dump(exact_store)
    again = import_files(bulk_store, [more], fmt="bon", score_name="ext", progress=False)
    assert again.already_imported


GOOD = {"prompt": "fine", "responses": ["a", "b"], "scores": [1.0, 0.0]}
HANDED_OVER = {
    "number reply": {"prompt": "p", "responses": ["a", 1]},
    "object reply": {"prompt": "p", "responses": ["a", {"text": "b", "score": 1}]},  # valid, exact lane only
    "messages prompt": {"prompt": [{"role": "user", "content": "p"}], "responses": ["a"]},  # valid too
    "bool score": {"prompt": "p", "responses": ["a"], "scores": [True]},
    "string score": {"prompt": "p", "responses": ["a"], "scores": ["1"]},
    "too few scores": {"prompt": "p", "responses": ["a", "b"], "scores": [1.0]},
    "blank reply": {"prompt": "p", "responses": ["a", " \t"]},
    "unicode blank reply": {"prompt": "p", "responses": ["\u3000\u00a0"]},
    "blank prompt": {"prompt": "\u2029", "responses": ["a"]},
    "no prompt": {"responses": ["a"]},
    "number prompt": {"prompt": 3, "responses": ["a"]},
    "no replies": {"prompt": "p", "responses": []},
    "replies not a list": {"prompt": "p", "responses": "a"},
    "empty tag": {"prompt": "p", "responses": ["a"], "tags": [""]},
    "number tag": {"prompt": "p", "responses": ["a"], "tags": [1]},
    "tags not a list": {"prompt": "p", "responses": ["a"], "tags": "x"},
    "NaN score": '{"prompt": "p", "responses": ["a"], "scores": [NaN]}',
    "overflowing score": '{"prompt": "p", "responses": ["a"], "scores": [1e999]}',
    "invalid JSON": '{"prompt": "p", "responses": ["a"]',
    "duplicate key": '{"prompt": "p", "prompt": "q", "responses": ["a"]}',
    "not an object": '["p", ["a"]]',
    "blank line": "",
    "oversized": {"prompt": "p", "responses": ["x" * 3000]},
}


def test_files_duckdb_reads_on_several_threads_keep_every_line_number(tmp_path):
    """The bulk lane numbers lines by row order (not by a serial ordinality): files of tens of MB,
    which DuckDB splits between threads, keep each record's line and the first occurrence wins."""
    texts = [" ".join(random.Random(i).choices(["alpha", "beta", "gamma", "delta"], k=150)) for i in range(50)]

    def records(tag: str, n: int) -> list[dict]:
        return [{"prompt": f"{tag} {i}", "responses": [f"{tag} {i}: {texts[i % 50]}", f"{texts[(i * 7) % 50]} {i}"]}
                for i in range(n)]

    first = write_jsonl(tmp_path / "one.jsonl", records("p", 24_000))  # about 44 MB
    second = write_jsonl(tmp_path / "two.jsonl", records("p", 100) + records("q", 9_000))  # repeats one's first 100
    store = Store(tmp_path / "bulk.duckdb", timeout=10)
    result = import_files(store, [first, second], fmt="bon", progress=False)
    assert lanes_used(store) == ["bulk"] and result.new_prompts == 24_000 + 9_000
    with store.connect() as con:
        rows = queries.fetch_rows(con, "SELECT text, source_line FROM prompts")
        replies = queries.fetch_rows(con, "SELECT p.text, r.source_line FROM responses r JOIN prompts p USING (prompt_id)")
    for text, line in rows + replies:
        tag, number = text.split()
        assert line == int(number) + (1 if tag == "p" else 101), (text, line)


@pytest.mark.parametrize("name", list(HANDED_OVER))
def test_anything_unusual_goes_to_the_exact_lane_with_the_same_outcome(tmp_path, name):
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD, HANDED_OVER[name], GOOD | {"prompt": "fine 2"}])
    (bulk_store, _, bulk_error), (exact_store, _, exact_error) = import_both(
        tmp_path, [path], fmt="bon", score_name="ext", max_record_bytes=2000)
    assert bulk_error == exact_error
    assert dump(bulk_store) == dump(exact_store)
    assert "bulk" not in lanes_used(bulk_store)


@pytest.mark.parametrize("fmt", ["bon", "auto"])
def test_a_byte_order_mark_is_read_as_the_start_of_the_text_in_both_lanes(tmp_path, fmt):
    """Issue 20.16: a UTF-8 BOM (as Windows tools write) used to make line 1 invalid JSON."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n" + json.dumps(GOOD | {"prompt": "two"}).encode()
                     + b"\n")
    (bulk_store, bulk, bulk_error), (exact_store, exact, exact_error) = import_both(tmp_path, [path], fmt=fmt,
                                                                                  score_name="ext")
    assert bulk_error is None and exact_error is None, (bulk_error, exact_error)
    assert lanes_used(bulk_store) == ["bulk"] and bulk.records == exact.records == 2
    assert dump(bulk_store) == dump(exact_store)
    with bulk_store.connect() as con:
        assert queries.fetch_rows(con, "SELECT text FROM prompts ORDER BY text") == [("fine",), ("two",)]


def test_the_record_size_limit_is_the_exact_lanes(tmp_path):
    line = json.dumps({"prompt": "p", "responses": ["x" * 100]})
    for limit in (len(line) - 1, len(line), len(line) + 1, len(line) + 2):
        work = tmp_path / str(limit)
        work.mkdir()
        path = write_jsonl(work / "in.jsonl", [line])
        (bulk_store, _, bulk_error), (exact_store, _, exact_error) = import_both(work, [path], fmt="bon",
                                                                                 max_record_bytes=limit)
        assert bulk_error == exact_error
        assert dump(bulk_store) == dump(exact_store)


def _random_value(rng: random.Random, kind: str):
    choices = {
        "text": ["ok", "two words", "ctl\x0bchar", " ", "", "\u3000", "é", 1, None, True, ["x"], {"t": "x"}],
        "score": [0.5, 1, -2, None, True, "1", 1e300, -0.0],
        "tag": ["t", "", 1, None],
    }[kind]
    return rng.choice(choices[:3] * 4 + choices)  # mostly valid values


def test_random_records_give_the_same_outcome_in_both_lanes(tmp_path):
    rng = random.Random(7)
    for case in range(40):
        records = []
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(0, 3)
            record = {"prompt": _random_value(rng, "text"), "responses": [_random_value(rng, "text") for _ in range(n)]}
            if rng.random() < 0.6:
                record["scores"] = [_random_value(rng, "score") for _ in range(n if rng.random() < 0.9 else n + 1)]
            if rng.random() < 0.3:
                record["tags"] = [_random_value(rng, "tag") for _ in range(rng.randint(0, 2))]
            records.append(record)
        work = tmp_path / str(case)
        work.mkdir()
        path = write_jsonl(work / "r.jsonl", records)
        (bulk_store, _, bulk_error), (exact_store, _, exact_error) = import_both(work, [path], fmt="bon",
                                                                                 score_name="ext")
        assert bulk_error == exact_error, records
        assert dump(bulk_store) == dump(exact_store), records


def test_a_trailing_comma_in_a_field_bon_does_not_read_is_tolerated(tmp_path):
    """Documented: DuckDB's reader accepts it where the exact lane refuses the line as invalid JSON."""
    path = tmp_path / "lenient.jsonl"
    path.write_text(json.dumps(GOOD) + '\n{"prompt": "p", "responses": ["a"], "meta": [1, 2,]}\n')
    (bulk_store, bulk, _), (_, _, exact_error) = import_both(tmp_path, [path], fmt="bon")
    assert bulk.new_responses == 3 and lanes_used(bulk_store) == ["bulk"]
    assert "invalid JSON" in exact_error


_STALLED_BULK_IMPORT = """
import sys, time
import workbench.store.bulk_import as b
original = b.insert
def stalling(con, **kwargs):
    counts = original(con, **kwargs)
    print("STALLED", flush=True)
    time.sleep(300)
    return counts
b.insert = stalling
from cli import main
sys.argv = ["workbench", "--db", sys.argv[1], "-q", "import", sys.argv[2], "--format", "bon"]
main()
"""


def test_sigkill_during_a_bulk_import_leaves_the_store_unchanged_and_rerun_completes(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "first.jsonl", [GOOD])], progress=False)
    before = dump(store)
    path = write_jsonl(tmp_path / "big.jsonl", [{"prompt": f"p{i}", "responses": [f"a{i}", f"b{i}"],
                                                 "scores": [1.0, 0.0]} for i in range(3000)])
    kill_when_printed(python(_STALLED_BULK_IMPORT, str(store.path), str(path)))
    assert dump(store) == before
    result = import_files(store, [path], fmt="bon", progress=False)
    assert (result.new_prompts, result.new_responses, result.new_scores) == (3000, 6000, 6000)
    assert table_counts(store)["responses"] == 6002 and lanes_used(store)[-1] == "bulk"


def test_a_duckdb_error_message_cut_inside_a_utf8_character_hands_over_to_the_exact_lane(tmp_path):
    """Found by tests/fuzz: DuckDB's error for this line quotes its bytes, cutting a character in
    half, and its Python binding raised UnicodeDecodeError, which crashed the import."""
    good = {"prompt": "What is 2+2?", "responses": ["4", "five", "22"], "scores": [1.5, -0.5, 0.0], "tags": ["math"]}
    key = "\U00025193\x03\xa1\x0e\U000a1efd"
    bad = good | {"scores": [1.5, -0.5, {"responses": False, "": {"content": None, key: None}}]}
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in (good, bad)))
    (bulk_store, _, bulk_error), (exact_store, _, exact_error) = import_both(tmp_path, [path], fmt="auto")
    assert bulk_error == exact_error and "in.jsonl:2: expected a finite number, got " \
        in bulk_error, bulk_error
    assert dump(bulk_store) == dump(exact_store)
