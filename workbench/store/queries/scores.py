"""Scores and Best-of-N picks: what a reward model still has to score, and each prompt's best sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed, fetch_rows
from workbench.store.queries.prompts_responses import PROMPT_FILTER, prompt_filter_params

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa


def unscored_rows(con, rm_id: str, selection: dict, generation_run: str | None, shard: tuple[int, int]) -> pa.Table:
    """What this reward model has left to score among the selected prompts' responses, in this shard:
    (response_id, response_row, prompt_row) without texts (ten million take ~0.6 GB), in row order, so
    that a chunk's rows sit together in the table and its fetch reads few row groups."""
    params = prompt_filter_params(selection) | {"rm": rm_id, "run": generation_run, "rank": shard[0],
                                                "world": shard[1]}
    return con.sql(f"""
        SELECT r.response_id, r.rowid AS response_row, p.rowid AS prompt_row FROM responses r
        JOIN prompts p ON p.prompt_id = r.prompt_id
        WHERE {PROMPT_FILTER} AND ($run IS NULL OR r.run_id = $run)
          AND ('0x' || substr(r.response_id, 1, 15))::UBIGINT % $world = $rank  -- stable shard by id
          AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.response_id = r.response_id AND s.rm_id = $rm)
        ORDER BY r.rowid""", params=params).to_arrow_table()


def responses_at_rows(con, listed: pa.Table) -> pa.Table:
    """(response_id, prompt_id, text, messages) of the rows `unscored_rows` listed, in the listed order.

    Fetched by row number (a point lookup, not a scan of every text); when the rows no longer hold
    those ids (the table was rewritten meanwhile), by id instead. A listed reply that is gone is left out.
    """
    import pyarrow as pa

    ids = listed["response_id"].to_pylist()
    replies = con.sql("SELECT response_id, prompt_id, text FROM responses WHERE rowid = ANY($rows)",
                      params={"rows": listed["response_row"].to_pylist()}).to_arrow_table()
    if sorted(replies["response_id"].to_pylist()) != sorted(ids):
        replies = con.sql("SELECT response_id, prompt_id, text FROM responses WHERE response_id IN (SELECT unnest($ids))",
                          params={"ids": ids}).to_arrow_table()
    wanted = set(replies["prompt_id"].to_pylist())
    prompts = con.sql("SELECT prompt_id, messages FROM prompts WHERE rowid = ANY($rows)",
                      params={"rows": sorted(set(listed["prompt_row"].to_pylist()))}).to_arrow_table()
    if not wanted <= set(prompts["prompt_id"].to_pylist()):
        prompts = con.sql("SELECT prompt_id, messages FROM prompts WHERE prompt_id IN (SELECT unnest($ids))",
                          params={"ids": sorted(wanted)}).to_arrow_table()
    joined = replies.join(prompts, "prompt_id", join_type="inner")
    order, found = {rid: i for i, rid in enumerate(ids)}, joined["response_id"].to_pylist()
    joined = joined.take(sorted(range(joined.num_rows), key=lambda i: order[found[i]]))
    return pa.table({name: joined[name] for name in ("response_id", "prompt_id", "text", "messages")})


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
