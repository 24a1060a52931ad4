"""A store for a long-running process (the app) that leaves the file free for other processes.

DuckDB gives the file to one process at a time, and a process waiting for it (the CLI) can only
retry its open now and then. `Store` already never holds a connection while idle, but an app
serving several tabs can have overlapping requests for seconds on end, so the file never closes
and a CLI command waits a long time. `SharedStore` bounds that: once this process has held the
file open without a break for `busy_s`, new connections wait until the open ones close, and the
file then stays closed for `gap_s`, long enough for a retrying process to get in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from workbench.store import Store
from workbench.store.connection import DEFAULT_TIMEOUT_S

BUSY_S = 1.0
GAP_S = 0.6
DRAIN_LIMIT_S = 2.0  # never wait longer than this for the open connections to close


class SharedStore(Store):
    """A `Store` whose connections pause now and then so other processes get the file."""

    def __init__(self, path=None, *, timeout: float = DEFAULT_TIMEOUT_S, busy_s: float = BUSY_S,
                 gap_s: float = GAP_S):
        self.busy_s, self.gap_s = busy_s, gap_s
        self._cond = threading.Condition()
        self._active = 0
        self._busy_since = 0.0
        self._pausing = False
        self._local = threading.local()
        self.pauses = 0
        super().__init__(path, timeout=timeout)

    @classmethod
    def sharing(cls, store: Store, **kwargs) -> "SharedStore":
        """`store` as a SharedStore (the same one if it already is)."""
        return store if isinstance(store, cls) else cls(store.path, timeout=store.timeout, **kwargs)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, after a pause if this process has held the file for long while others wait."""
        depth = getattr(self._local, "depth", 0)
        if not depth:  # a connection opened inside another one in this thread must not wait for itself
            self._acquire()
        self._local.depth = depth + 1
        try:
            with super().connect() as con:
                yield con
        finally:
            self._local.depth = depth
            if not depth:
                self._release()

    def _acquire(self) -> None:
        with self._cond:
            while self._pausing:
                self._cond.wait()
            now = time.monotonic()
            if not self._active:
                self._busy_since = now
            elif now - self._busy_since >= self.busy_s:
                self._pause()
            self._active += 1

    def _pause(self) -> None:
        """Let the open connections finish, keep the file closed for `gap_s` (lock held by caller)."""
        self._pausing = True
        self.pauses += 1
        drain_end = time.monotonic() + DRAIN_LIMIT_S
        while self._active and (left := drain_end - time.monotonic()) > 0:
            self._cond.wait(left)
        if not self._active:
            gap_end = time.monotonic() + self.gap_s
            while (left := gap_end - time.monotonic()) > 0:
                self._cond.wait(left)
        self._pausing = False
        self._busy_since = time.monotonic()
        self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self._active -= 1
            if not self._active:
                self._cond.notify_all()
