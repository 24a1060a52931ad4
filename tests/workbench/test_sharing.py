"""SharedStore: an app that keeps the store busy still lets another process in, within its timeout."""

import subprocess
import sys
import threading

from workbench.runtime.sharing import SharedStore
from workbench.store import Store

# Another process: opens the store (retrying while it is locked) and writes one run.
OTHER = """
import json, sys
from workbench.store import Store, queries
store = Store(sys.argv[1], timeout=float(sys.argv[2]))
store.write(lambda con: queries.insert_run(con, "other-process", "import", "completed", {}, {}))
print(json.dumps({"written": True}))
"""


class _Relay:
    """Counts connections opened by the hammering threads."""

    def __init__(self):
        self.cond, self.opened = threading.Condition(), 0


def _hammer(store, stop, errors, relay):
    """Overlapping reads from two threads that hand over: each keeps its connection until the other
    has opened its next one, so the file never closes on its own. Only a SharedStore pause, which
    holds the next open back, makes the holder let go (after at most 1 s)."""
    while not stop.is_set():
        try:
            with store.connect() as con:
                con.execute("SELECT count(*) FROM runs").fetchall()
                with relay.cond:
                    relay.opened += 1
                    mine = relay.opened
                    relay.cond.notify_all()
                    relay.cond.wait_for(lambda: relay.opened > mine or stop.is_set(), timeout=1.0)
        except Exception as error:  # noqa: BLE001
            errors.append(error)


def _other_process_while_busy(store, timeout_s: float) -> subprocess.CompletedProcess:
    stop, errors, relay = threading.Event(), [], _Relay()
    threads = [threading.Thread(target=_hammer, args=(store, stop, errors, relay)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        with relay.cond:  # both threads are holding connections before the other process starts
            assert relay.cond.wait_for(lambda: relay.opened >= 2 or errors, timeout=60), "the threads never started"
        return subprocess.run([sys.executable, "-c", OTHER, str(store.path), str(timeout_s)], capture_output=True,
                              text=True, timeout=120)
    finally:
        stop.set()
        with relay.cond:
            relay.cond.notify_all()
        for thread in threads:
            thread.join()
        assert not errors


def test_busy_app_leaves_gaps_for_another_process(tmp_path):
    import json

    store = SharedStore(tmp_path / "s.duckdb", busy_s=0.5, gap_s=0.6)
    # The other process's store timeout is the deadline: without the pauses it is starved and fails.
    done = _other_process_while_busy(store, timeout_s=20)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["written"] and store.pauses >= 1
    with Store(store.path).connect() as con:
        assert con.execute("SELECT count(*) FROM runs WHERE run_id = 'other-process'").fetchall() == [(1,)]


def test_nested_connections_and_writes_do_not_deadlock(tmp_path):
    store = SharedStore(tmp_path / "s.duckdb", busy_s=0.0, gap_s=0.05)  # pause on every overlap
    with store.connect() as outer:
        with store.connect() as inner:  # same thread: must not wait for itself
            assert inner.execute("SELECT 1").fetchall() == [(1,)]
        outer.execute("SELECT 1").fetchall()
    results = []

    def work(i):
        for _ in range(5):
            store.write(lambda con: con.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)").fetchall())
            store.write(lambda con: con.execute("INSERT INTO t VALUES (?)", [i]).fetchall())
            with store.connect() as con:
                results.append(con.execute("SELECT count(*) FROM t").fetchall()[0][0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(15,)]


def test_sharing_wraps_a_plain_store_once(tmp_path):
    plain = Store(tmp_path / "s.duckdb", timeout=5)
    shared = SharedStore.sharing(plain)
    assert isinstance(shared, SharedStore) and shared.path == plain.path and shared.timeout == 5
    assert SharedStore.sharing(shared) is shared
