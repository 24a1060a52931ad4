"""Child processes for tests: crash tests (SIGKILL at a known point) and free ports for servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

MARKER = "STALLED"


def stall_after_insert(table: str, nth: int, then: str) -> str:
    """Source of a child that stops inside the transaction of its `nth` insert into `table`.

    It prints MARKER once that insert ran but before its transaction commits, then sleeps so the
    parent can kill it; `then` is the code the child runs (it must reach that insert).
    """
    return f"""
import sys, time
import workbench.store.queries as q
original = q.insert_new
calls = {{"n": 0}}
def stalling(con, name, table, **options):
    n = original(con, name, table, **options)
    if name == {table!r}:
        calls["n"] += 1
        if calls["n"] == {nth}:
            print({MARKER!r}, flush=True)
            time.sleep(300)
    return n
q.insert_new = stalling
{then}
"""


def kill_when_printed(args: list[str], marker: str = MARKER, timeout: float = 180, **popen) -> None:
    """Run `args`, wait until the child prints `marker`, then SIGKILL it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **popen.pop("env", {})}
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, **popen)
    try:
        deadline, line = time.monotonic() + timeout, ""
        while marker not in line and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                break
        assert marker in line, f"the child never printed {marker!r} (exit code {child.poll()})"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL


def python(source: str, *args: str) -> list[str]:
    return [sys.executable, "-c", source, *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
