"""Scores and Best-of-N picks: what a reward model still has to score, and each prompt's best sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed, fetch_rows
from workbench.store.queries.prompts_responses import PROMPT_FILTER, prompt_filter_params

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa


def responses_to_score(con, rm_id: str, selection: dict, generation_run: str | None, shard: tuple[int, int],
                       limit: int | None) -> pa.Table:
    """Responses of the selected prompts that this reward model has not scored, in this shard."""
    params = prompt_filter_params(selection) | {"rm": rm_id, "run": generation_run, "rank": shard[0],
                                                "world": shard[1]}
    sql = f"""
        SELECT r.response_id, r.prompt_id, r.text, p.messages FROM responses r
        JOIN prompts p ON p.prompt_id = r.prompt_id
        WHERE {PROMPT_FILTER} AND ($run IS NULL OR r.run_id = $run)
          AND ('0x' || substr(r.response_id, 1, 15))::UBIGINT % $world = $rank  -- stable shard by id
          AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.response_id = r.response_id AND s.rm_id = $rm)
        ORDER BY r.response_id"""
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = int(limit)
    return con.sql(sql, params=params).to_arrow_table()


def count_scored(con, rm_id: str, selection: dict, generation_run: str | None) -> tuple[int, int]:
    """(responses selected, of which scored by this reward model)."""
    params = prompt_filter_params(selection) | {"rm": rm_id, "run": generation_run}
    return fetch_rows(con, f"""
        SELECT count(*), count(s.response_id) FROM responses r
        JOIN prompts p ON p.prompt_id = r.prompt_id
        LEFT JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        WHERE {PROMPT_FILTER} AND ($run IS NULL OR r.run_id = $run)""", params)[0]


def insert_bon_picks(con, rm_id: str, run_id: str) -> int:
    """For each prompt of a generation run, its best sample by this reward model (ties: lower index)."""
    return count_changed(con, """
        INSERT INTO bon_picks (prompt_id, rm_id, run_id, response_id, score, created_at)
        SELECT r.prompt_id, $rm, $run, r.response_id, s.score, current_timestamp
        FROM responses r JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        WHERE r.run_id = $run AND isfinite(s.score)
          AND NOT EXISTS (SELECT 1 FROM bon_picks b WHERE b.prompt_id = r.prompt_id AND b.rm_id = $rm
                          AND b.run_id = $run)
        QUALIFY row_number() OVER (PARTITION BY r.prompt_id ORDER BY s.score DESC, r.sample_index) = 1""",
        {"rm": rm_id, "run": run_id})
