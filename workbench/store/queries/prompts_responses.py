"""Prompts and responses: selecting prompts, a generation run's samples, curation flags, token counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed, fetch_rows, fetch_value

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

# Which prompts a command (or the app) works on; every value is a bound parameter.
PROMPT_FILTER = """
    ($source IS NULL OR p.source = $source)
    AND ($tag IS NULL OR list_contains(p.tags, $tag))
    AND ($search IS NULL OR p.text ILIKE '%' || $search || '%')
    AND ($ids IS NULL OR list_contains($ids, p.prompt_id))
"""


def prompt_filter_params(selection: dict) -> dict:
    """The bound parameters of `PROMPT_FILTER` for a selection (source, tag, search, prompt_ids)."""
    return {"source": selection.get("source"), "tag": selection.get("tag"), "search": selection.get("search"),
            "ids": selection.get("prompt_ids")}


def count_prompts(con, selection: dict) -> int:
    """How many prompts match the selection (its limit aside)."""
    return fetch_value(con, f"SELECT count(*) FROM prompts p WHERE {PROMPT_FILTER}", prompt_filter_params(selection))


def select_prompts(con, selection: dict) -> list[tuple[str, str]]:
    """(prompt_id, messages JSON) of the selected prompts, by id (a stable order)."""
    params = prompt_filter_params(selection)
    sql = f"SELECT p.prompt_id, p.messages FROM prompts p WHERE {PROMPT_FILTER} ORDER BY p.prompt_id"
    if selection.get("limit") is not None:
        sql += " LIMIT $limit"
        params["limit"] = int(selection["limit"])
    return fetch_rows(con, sql, params)


def generated_samples(con, run_id: str) -> list[tuple[str, int]]:
    """(prompt_id, sample_index) of the samples a generation run has stored so far."""
    return fetch_rows(con, "SELECT prompt_id, sample_index FROM responses WHERE run_id = ?", [run_id])


def run_samples(con, run_id: str) -> pa.Table:
    """A generation run's samples (ids, sample index, text, finish reason), by prompt and index."""
    return con.sql("""
        SELECT response_id, prompt_id, sample_index, text, finish_reason FROM responses
        WHERE run_id = $run ORDER BY prompt_id, sample_index""", params={"run": run_id}).to_arrow_table()


def set_response_flags(con, flags: pa.Table) -> int:
    """Store curation flags (response_id, near_duplicate_of, truncated, repetition); rows updated."""
    con.register("flags", flags)
    try:
        return count_changed(con, """
            UPDATE responses SET flag_near_duplicate_of = f.near_duplicate_of, flag_truncated = f.truncated,
                                 flag_repetition = f.repetition
            FROM flags f WHERE responses.response_id = f.response_id""")
    finally:
        con.unregister("flags")


def responses_missing_tokens(con, rm_id: str, source: str | None, run: str | None) -> pa.Table:
    """(response_id, text) of scored responses without a token count, for the pairs' length ratio."""
    return con.sql("""
        SELECT r.response_id, r.text FROM responses r
        JOIN scores s ON s.response_id = r.response_id AND s.rm_id = $rm
        JOIN prompts p ON p.prompt_id = r.prompt_id
        WHERE r.n_tokens IS NULL AND ($source IS NULL OR p.source = $source) AND ($run IS NULL OR r.run_id = $run)
    """, params={"rm": rm_id, "source": source, "run": run}).to_arrow_table()


def set_token_counts(con, table: pa.Table) -> int:
    """Store token counts (response_id, n_tokens); rows updated."""
    con.register("token_counts", table)
    try:
        return count_changed(con, """
            UPDATE responses SET n_tokens = t.n_tokens FROM token_counts t
            WHERE responses.response_id = t.response_id""")
    finally:
        con.unregister("token_counts")
