"""The `runs` table: one row per import, generation, scoring, training, pairs or export run."""

from __future__ import annotations

import json

from workbench.store.queries.fetch import fetch_dicts


def get_run(con, run_id: str) -> dict | None:
    """The run's row, or None."""
    found = fetch_dicts(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    return found[0] if found else None


def insert_run(con, run_id: str, kind: str, status: str, config: dict, environment: dict,
               summary: dict | None = None) -> None:
    """Record a run; a completed or failed one gets its finish time now."""
    con.execute(
        "INSERT INTO runs (run_id, kind, status, config, environment, summary, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, current_timestamp, "
        "CASE WHEN ? IN ('completed', 'failed') THEN current_timestamp END)",
        [run_id, kind, status, json.dumps(config), json.dumps(environment),
         json.dumps(summary) if summary is not None else None, status],
    ).fetchall()


def finish_run(con, run_id: str, status: str, summary: dict | None = None, error: str | None = None) -> None:
    """Mark a run completed or failed, with its summary or error."""
    con.execute(
        "UPDATE runs SET status = ?, summary = ?, error = ?, finished_at = current_timestamp WHERE run_id = ?",
        [status, json.dumps(summary) if summary is not None else None, error, run_id],
    ).fetchall()


def restart_run(con, run_id: str) -> None:
    """Mark a finished or failed run as running again (a resumed run)."""
    con.execute("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL WHERE run_id = ?",
                [run_id]).fetchall()


def list_runs(con, kind: str | None = None, limit: int = 50) -> list[dict]:
    """Recent runs, newest first, optionally of one kind."""
    return fetch_dicts(
        con,
        "SELECT run_id, kind, status, started_at, finished_at, summary, error FROM runs "
        "WHERE ? IS NULL OR kind = ? ORDER BY started_at DESC LIMIT ?",
        [kind, kind, limit],
    )
