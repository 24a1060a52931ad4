"""Run bookkeeping shared by the long jobs (generation, scoring, training).

A run's id is a hash of its kind and resolved config, so the same command finds its own run
again: a rerun continues a run that was interrupted or failed.
"""

from __future__ import annotations

from workbench.provenance import environment
from workbench.store import Store, queries


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
    message = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
    try:
        store.write(lambda con: queries.finish_run(con, run_id, "failed", None, message))
    except Exception:  # the store itself may be what failed: the run stays 'running' and resumes
        pass


def finish_run(store: Store, run_id: str, summary: dict) -> None:
    store.write(lambda con: queries.finish_run(con, run_id, "completed", summary))
