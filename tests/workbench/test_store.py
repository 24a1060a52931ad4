import multiprocessing
import time

import duckdb
import pytest

from workbench.errors import StoreBusy, StoreError
from workbench.store import Store, migrations, queries


def _schema(path):
    con = duckdb.connect(str(path))
    try:
        return con.execute("""
            SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
            ORDER BY table_name, column_name""").fetchall()
    finally:
        con.close()


def test_blank_and_first_schema_stores_migrate_to_the_same_latest_schema(tmp_path):
    blank = tmp_path / "blank.duckdb"
    Store(blank)

    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    assert migrations.migrate(con, target=1) == ["m001_initial"]
    con.execute("INSERT INTO prompts VALUES ('p1', '[]', 'hi', 'src', ['t'], 'r1', 1, current_timestamp)")
    con.execute("INSERT INTO responses VALUES ('x1', 'p1', 'hello', 'imported', 'r1', 0, 5, NULL, NULL, NULL, "
                "NULL, 1, current_timestamp)")
    con.close()

    store = Store(old)  # opening migrates
    assert _schema(old) == _schema(blank)
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT max(version) FROM schema_migrations") == migrations.LATEST
        # old rows survive, new columns are NULL
        assert queries.fetch_rows(con, "SELECT text, flag_truncated FROM responses") == [("hello", None)]


def test_migrations_are_numbered_in_order_and_append_only():
    numbers = [number for number, _, _ in migrations.MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1))
    names = [name for _, name, _ in migrations.MIGRATIONS]
    assert all(name.startswith(f"m{n:03d}_") for n, name in zip(numbers, names))


def test_a_store_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "future.duckdb"
    Store(path)
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (999, 'm999_future', current_timestamp)")
    con.close()
    with pytest.raises(StoreError, match="newer than this workbench"):
        Store(path)


def test_transaction_rolls_back_on_error(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            queries.insert_run(con, "r1", "import", "completed", {}, {})
            raise RuntimeError("boom")
    with store.connect() as con:
        assert queries.get_run(con, "r1") is None


def _hold_lock(path, seconds, ready):
    con = duckdb.connect(str(path))
    ready.set()
    time.sleep(seconds)
    con.close()


def test_a_locked_store_is_retried_until_free_then_reported_busy(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path)
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(path, 1.5, ready))
    holder.start()
    try:
        ready.wait(10)
        start = time.monotonic()
        with Store(path, timeout=20).connect() as con:  # waits for the other process
            assert queries.fetch_value(con, "SELECT 1") == 1
        assert time.monotonic() - start > 0.5
    finally:
        holder.join()

    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(path, 3, ready))
    holder.start()
    try:
        ready.wait(10)
        with pytest.raises(StoreBusy, match="stayed locked"):
            Store(path, timeout=0.3)
    finally:
        holder.join()


def _blake2b(*parts: str) -> str:
    """Content ids as stores up to schema 2 computed them."""
    import hashlib

    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def test_m003_rekeys_a_schema_2_store_with_the_ids_new_imports_compute(tmp_path):
    import json

    from workbench import ids
    from workbench.ingest.importer import import_files

    path = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(path))
    migrations.migrate(con, target=2)
    single = [{"role": "user", "content": "Say hi"}]
    multi = [{"role": "system", "content": "Be brief.\n"}, {"role": "user", "content": "Hi"}]
    old = {"single": _blake2b("prompt", ids.canonical_messages(single)),
           "multi": _blake2b("prompt", ids.canonical_messages(multi))}
    hi, hello = _blake2b("response", old["single"], "hi"), _blake2b("response", old["single"], "hello")
    gen0, gen1 = _blake2b("generated", "gen", old["multi"], "0"), _blake2b("generated", "gen", old["multi"], "1")
    spec = '{"strategy":"best-vs-worst"}'
    for key, messages in (("single", single), ("multi", multi)):
        con.execute("INSERT INTO prompts VALUES (?, ?, 'x', 'src', [], 'imp', 1, current_timestamp)",
                    [old[key], ids.canonical_messages(messages)])
    for rid, pid, text, origin, run, index in ((hi, old["single"], "hi", "imported", "imp", 0),
                                               (hello, old["single"], "hello", "imported", "imp", 1),
                                               (gen0, old["multi"], "same", "generated", "gen", 0),
                                               (gen1, old["multi"], "same", "generated", "gen", 1)):
        con.execute("INSERT INTO responses (response_id, prompt_id, text, origin, run_id, sample_index, n_chars, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)", [rid, pid, text, origin, run,
                                                                                    index, len(text)])
    con.execute("UPDATE responses SET flag_near_duplicate_of = ? WHERE response_id = ?", [gen0, gen1])
    for rid, score in ((hi, 1.0), (hello, 0.0), (gen0, 2.0)):
        con.execute("INSERT INTO scores VALUES (?, 'rm1', ?, 'sc', current_timestamp)", [rid, score])
    con.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, 'human', NULL, 'human', '{}', NULL, NULL, NULL, 'imp', 1, "
                "current_timestamp)", [_blake2b("pair", "human", "human", hi, hello), old["single"], hi, hello])
    con.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, 'rm', 'rm1', 'best-vs-worst', ?, 1.0, 0.0, 1.0, 'pr', NULL, "
                "current_timestamp)", [_blake2b("pair", "rm1", spec, hi, hello), old["single"], hi, hello, spec])
    con.execute("INSERT INTO bon_picks VALUES (?, 'rm1', 'gen', ?, 2.0, current_timestamp)", [old["multi"], gen0])
    con.close()

    store = Store(path)  # opening migrates
    new = {"single": ids.prompt_id(single), "multi": ids.prompt_id(multi)}
    new_hi, new_hello = ids.imported_response_id(new["single"], "hi"), ids.imported_response_id(new["single"], "hello")
    new_gen0 = ids.generated_response_id("gen", new["multi"], 0)
    with store.connect() as con:
        assert sorted(queries.fetch_rows(con, "SELECT prompt_id FROM prompts")) == sorted((v,) for v in new.values())
        assert sorted(queries.fetch_rows(con, "SELECT response_id, prompt_id, flag_near_duplicate_of FROM responses")) == \
            sorted([(new_hi, new["single"], None), (new_hello, new["single"], None), (new_gen0, new["multi"], None),
                    (ids.generated_response_id("gen", new["multi"], 1), new["multi"], new_gen0)])
        assert sorted(queries.fetch_rows(con, "SELECT response_id, score FROM scores")) == \
            sorted([(new_hi, 1.0), (new_hello, 0.0), (new_gen0, 2.0)])
        assert sorted(queries.fetch_rows(con, "SELECT pair_id, prompt_id, chosen_id, rejected_id FROM pairs")) == sorted([
            (ids.pair_id("human", "human", new_hi, new_hello), new["single"], new_hi, new_hello),
            (ids.pair_id("rm1", spec, new_hi, new_hello), new["single"], new_hi, new_hello)])
        assert queries.fetch_rows(con, "SELECT prompt_id, response_id FROM bon_picks") == [(new["multi"], new_gen0)]

    # the same content imported now is recognised as already stored
    data = tmp_path / "again.jsonl"
    data.write_text(json.dumps({"prompt": "Say hi", "responses": ["hi", "hello"]}) + "\n")
    result = import_files(store, [data], fmt="bon", progress=False)
    assert (result.new_prompts, result.new_responses) == (0, 0)


def test_store_connections_bound_duckdbs_memory_and_draw_no_progress_bar(tmp_path, monkeypatch):
    """DuckDB's defaults are 80% of the machine's memory and a progress bar on stdout for any query
    over ~2 s (which broke `--json` output at 3M replies): every store connection overrides both."""
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        limit, bar = con.execute("SELECT current_setting('memory_limit'), current_setting('enable_progress_bar')"
                                 ).fetchall()[0]
    assert bar is False
    assert limit.endswith("GiB") and float(limit.split()[0]) <= 3
    monkeypatch.setenv("WORKBENCH_DUCKDB_MEMORY", "700MB")
    with Store(tmp_path / "other.duckdb").connect() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "667.5 MiB"
    monkeypatch.setenv("WORKBENCH_DUCKDB_MEMORY", "lots")
    with pytest.raises(StoreError, match=r"WORKBENCH_DUCKDB_MEMORY='lots' is not a memory size"):
        Store(tmp_path / "third.duckdb")
