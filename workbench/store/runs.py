"""Run bookkeeping: `recorded_run` for the long jobs (generation, scoring, training), and
`record_completed_run` for work done in one transaction (pairs, export).

A run's id is a hash of its kind and resolved config, so the same command finds its own run
again: a rerun continues a run that was interrupted or failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from workbench.store.provenance import environment
from workbench.store import Store, queries


@dataclass
class RecordedRun:
    """The run a `recorded_run` block works in. Set `summary` to mark it completed on exit."""

    run_id: str
    earlier: dict | None = None      # the run's record before this start (a resumed run), if any
    summary: dict | None = None


@contextmanager
def recorded_run(store: Store | None, run_id: str, kind: str, config: dict) -> Iterator[RecordedRun]:
    """Record the run as running for the block; an exception (Ctrl-C included) marks it failed
    and goes on; a clean exit marks it completed with `run.summary`. A block that leaves the
    summary None leaves the run running (a sharded scoring run is closed by its last shard).
    With no store (training ranks other than 0) nothing is recorded."""
    if store is None:
        yield RecordedRun(run_id)
        return
    run = RecordedRun(run_id, start_run(store, run_id, kind, config))
    try:
        yield run
    except BaseException as error:
        fail_run(store, run_id, error)
        raise
    if run.summary is not None:
        finish_run(store, run_id, run.summary)


def start_run(store: Store, run_id: str, kind: str, config: dict) -> dict | None:
    """Record the run as running (new, or resumed); returns the earlier record, if any."""

    def write(con):
        existing = queries.get_run(con, run_id)
        if existing is None:
            queries.insert_run(con, run_id, kind, "running", config, environment())
        elif existing["status"] != "running":
            queries.restart_run(con, run_id)
        return existing

    return store.write(write)


def fail_run(store: Store, run_id: str, error: BaseException) -> None:
    """Mark the run failed with the error; if the store itself fails, the run stays running."""
    message = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
    try:
        store.write(lambda con: queries.finish_run(con, run_id, "failed", None, message))
    except Exception:  # the store itself may be what failed: the run stays 'running' and resumes
        pass


def finish_run(store: Store, run_id: str, summary: dict) -> None:
    """Mark the run completed with its summary."""
    store.write(lambda con: queries.finish_run(con, run_id, "completed", summary))


def record_completed_run(con, run_id: str, kind: str, config: dict, summary: dict) -> None:
    """Record work done inside the caller's transaction as a completed run (a rerun of the same
    config updates the summary of its run)."""
    if queries.get_run(con, run_id) is None:
        queries.insert_run(con, run_id, kind, "completed", config, environment(), summary)
    else:
        queries.finish_run(con, run_id, "completed", summary)
