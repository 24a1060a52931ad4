"""SQL for rollouts that the reward server scored: one transaction writes a whole batch.

A batch is a set of (prompt, reply, score) rows of one server; its prompts, replies and scores go
in together through the bulk anti-join inserts (`queries.insert_new`), so a batch is either all
in the store or not at all, and writing the same batch twice adds nothing.
"""

from __future__ import annotations

import pyarrow as pa

from workbench.store import queries


def ensure_rollout_runs(con, runs: dict[str, dict], environment: dict) -> int:
    """Insert the `rollout` runs (run_id -> config) that are not stored yet; returns how many."""
    new = 0
    for run_id, config in runs.items():
        if queries.get_run(con, run_id) is None:
            queries.insert_run(con, run_id, "rollout", "running", config, environment)
            new += 1
    return new


def insert_rollout_batch(con, prompts: pa.Table, responses: pa.Table, scores: pa.Table) -> int:
    """Store one batch (all three tables in the caller's transaction); returns the replies added."""
    queries.insert_new(con, "prompts", prompts)
    added = queries.insert_new(con, "responses", responses)
    queries.insert_new(con, "scores", scores)
    return added


def rollout_replies(con, response_ids: list[str]) -> list[tuple[str, str, str, str]]:
    """(response_id, run_id, prompt_id, text) of every reply in the same run and prompt as any of
    `response_ids`, in sample order: the groups whose near-duplicate flags a new batch can change."""
    return con.execute("""
        SELECT r.response_id, r.run_id, r.prompt_id, r.text FROM responses r
        JOIN (SELECT DISTINCT run_id, prompt_id FROM responses WHERE response_id IN (SELECT unnest(?))) g
          ON g.run_id = r.run_id AND g.prompt_id = r.prompt_id
        ORDER BY r.run_id, r.prompt_id, r.sample_index""", [response_ids]).fetchall()


def finish_rollout_runs(con, run_ids: list[str], counts: dict[str, int]) -> None:
    """Mark a server's rollout runs completed, each with the number of rollouts it holds."""
    for run_id in run_ids:
        queries.finish_run(con, run_id, "completed", {"rollouts": counts.get(run_id, 0)})


def rollout_counts(con, run_ids: list[str]) -> dict[str, int]:
    """Stored replies per rollout run."""
    if not run_ids:
        return {}
    found = con.execute("SELECT run_id, count(*) FROM responses WHERE run_id IN (SELECT unnest(?)) GROUP BY 1",
                        [run_ids]).fetchall()
    return {run_id: int(n) for run_id, n in found}
