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
        assert queries.value(con, "SELECT max(version) FROM schema_migrations") == migrations.LATEST
        # old rows survive, new columns are NULL
        assert queries.rows(con, "SELECT text, flag_truncated FROM responses") == [("hello", None)]


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
            assert queries.value(con, "SELECT 1") == 1
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
