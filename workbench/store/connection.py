"""Short-lived DuckDB connections with retries, so several processes can share one store.

DuckDB lets one process at a time open a database file. The app, the CLI and background
jobs therefore never hold a connection while idle: each unit of work opens the file, runs in
one transaction and closes it. A process that finds the file locked retries with backoff for
up to `timeout` seconds before raising `StoreBusy`. Long jobs write in small batches so they
hold the lock only for moments.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from workbench.errors import StoreBusy, StoreError
from workbench.store import migrations

DEFAULT_DB = "workbench.duckdb"
DEFAULT_TIMEOUT_S = 120.0
_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def default_db_path() -> Path:
    """$WORKBENCH_DB, else ./workbench.duckdb."""
    return Path(os.environ.get("WORKBENCH_DB", DEFAULT_DB))


MEMORY_ENV = "WORKBENCH_DUCKDB_MEMORY"
DEFAULT_MEMORY_GB = 3


def duckdb_config() -> dict:
    """The database settings every store connection opens with: DuckDB's memory limit.

    DuckDB's own default is 80% of the machine's memory, and a store shares the machine with models
    and the app; at ten million replies an import then held 4.6 GB at 3M and grew with the input.
    Bounded, DuckDB spills joins, sorts and staging tables to `<store>.tmp` instead. The default is
    3 GB (or a quarter of the memory, if less); `$WORKBENCH_DUCKDB_MEMORY` sets another
    (DuckDB's syntax: `8GB`, `500MB`). Every connection of a process must use the same value.
    """
    value = os.environ.get(MEMORY_ENV, "").strip()
    if value and not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", value, re.IGNORECASE):
        raise StoreError(f"${MEMORY_ENV}={value!r} is not a memory size: give e.g. 8GB or 500MB")
    if not value:
        total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        value = f"{max(0.5, min(DEFAULT_MEMORY_GB, total_gb / 4)):.1f}GB"
    return {"memory_limit": value}


def _is_lock_error(error: Exception) -> bool:
    return isinstance(error, duckdb.IOException) and any(m in str(error) for m in _LOCK_MESSAGES)


def _is_conflict(error: Exception) -> bool:
    return isinstance(error, duckdb.TransactionException) and "onflict" in str(error)


_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.RLock:
    """One lock per store file and process: inserts are anti-joins, so writers take turns."""
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


class Store:
    """A DuckDB store file. Cheap to create; opens the file only inside `connect()`/`transaction()`."""

    def __init__(self, path: str | os.PathLike | None = None, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_db_path()
        self.timeout = timeout
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory; give the path of a .duckdb file.")
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _ensure_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            version = migrations.current_version(con)
            if version > migrations.LATEST:
                raise StoreError(
                    f"store {self.path} has schema version {version}, newer than this workbench "
                    f"understands ({migrations.LATEST}); upgrade dpo-workbench."
                )
            if version < migrations.LATEST:
                migrations.migrate(con)

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.timeout
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), config=duckdb_config())
                # DuckDB draws its own progress bar on stdout for a query over ~2 s: at scale it broke
                # the JSON of `--json` commands (found at 3M replies). Progress goes to stderr, ours.
                con.execute("SET enable_progress_bar = false")
                return con
            except duckdb.Error as error:
                if not _is_lock_error(error):
                    raise StoreError(f"cannot open store {self.path}: {error}") from error
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"store {self.path} stayed locked by another process for {self.timeout:.0f} s; "
                        "wait for it to finish or raise --timeout."
                    ) from error
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reads or for statements that manage their own transaction."""
        con = self._open()
        try:
            yield con
        except duckdb.Error as error:
            raise StoreError(f"store {self.path}: {error}") from error
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic unit of work: everything inside commits together or not at all."""
        with _write_lock(self.path), self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def write(self, work, *, attempts: int = 5):
        """Run `work(con)` in a transaction, retrying when a concurrent writer conflicts."""
        for attempt in range(attempts):
            try:
                with self.transaction() as con:
                    return work(con)
            except StoreError as error:
                if attempt == attempts - 1 or not _is_conflict(error.__cause__):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")
