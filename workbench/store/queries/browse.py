"""The prompt browser: pages of prompts in a chosen order, and one prompt with everything about it.

Every value typed in the browser arrives as a bound parameter ($name). The only text spliced
into a statement is a sort order, picked from `PROMPT_SORTS` by key; an unknown key raises KeyError.
"""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_dicts, fetch_rows
from workbench.store.queries.prompts_responses import PROMPT_FILTER, prompt_filter_params

# Sort orders by key. "responses" needs each prompt's response count, the others only prompts.
PROMPT_SORTS = {
    "newest": "p.created_at DESC, p.source_line, p.prompt_id",
    "oldest": "p.created_at, p.source_line, p.prompt_id",
    "text": "p.text, p.prompt_id",
    "source": "p.source, p.source_line, p.prompt_id",
    "most responses": "n_responses DESC, p.prompt_id",
    "fewest responses": "n_responses, p.prompt_id",
}
_RESPONSE_COUNTS = "LEFT JOIN (SELECT prompt_id, count(*) AS n_responses FROM responses GROUP BY 1) c " \
                   "ON c.prompt_id = p.prompt_id"


def prompt_page(con, filters: dict, sort: str, limit: int, offset: int) -> list[dict]:
    """One page of prompts (id, text, source, tags, created_at) in the order `sort` names."""
    order = PROMPT_SORTS[sort]
    join = _RESPONSE_COUNTS if "n_responses" in order else ""
    return fetch_dicts(con, f"""
        SELECT p.prompt_id, p.text, p.source, p.tags, p.created_at FROM prompts p {join}
        WHERE {PROMPT_FILTER} ORDER BY {order} LIMIT $limit OFFSET $offset""",
        prompt_filter_params(filters) | {"limit": limit, "offset": offset})


def prompt_page_stats(con, prompt_ids: list[str]) -> dict[str, dict]:
    """Per prompt of a page: responses, Best-of-N picks and pairs (scores are left to the detail
    view: counting them means scanning every score, 100 ms at a million)."""
    found = fetch_dicts(con, """
        WITH ids AS (SELECT unnest($ids) AS prompt_id),
        r AS (SELECT prompt_id, count(*) AS n FROM responses WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1),
        b AS (SELECT prompt_id, count(*) AS n FROM bon_picks WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1),
        x AS (SELECT prompt_id, count(*) AS n FROM pairs WHERE prompt_id IN (SELECT prompt_id FROM ids) GROUP BY 1)
        SELECT ids.prompt_id, coalesce(r.n, 0) AS n_responses, coalesce(b.n, 0) AS n_picks, coalesce(x.n, 0) AS n_pairs
        FROM ids LEFT JOIN r USING (prompt_id) LEFT JOIN b USING (prompt_id) LEFT JOIN x USING (prompt_id)""",
        {"ids": prompt_ids})
    return {row.pop("prompt_id"): row for row in found}


def prompt_row(con, prompt_id: str) -> dict | None:
    """The prompt (id, messages, text, source, tags, created_at), or None."""
    found = fetch_dicts(con, "SELECT prompt_id, messages, text, source, tags, created_at FROM prompts "
                       "WHERE prompt_id = $id", {"id": prompt_id})
    return found[0] if found else None


def prompt_responses(con, prompt_id: str) -> list[dict]:
    """The prompt's responses with their run, finish reason and flags, imported ones first."""
    return fetch_dicts(con, """
        SELECT response_id, text, origin, run_id, sample_index, n_chars, n_tokens, finish_reason,
               flag_near_duplicate_of, flag_truncated, flag_repetition
        FROM responses WHERE prompt_id = $id
        ORDER BY origin, run_id, sample_index NULLS LAST, response_id""", {"id": prompt_id})


def prompt_scores(con, prompt_id: str) -> list[tuple[str, str, float]]:
    """(response_id, NAME@VERSION, score) for every score of the prompt's responses."""
    return fetch_rows(con, """
        SELECT s.response_id, m.name || '@' || m.version, s.score FROM scores s
        JOIN reward_models m ON m.rm_id = s.rm_id
        WHERE s.response_id IN (SELECT response_id FROM responses WHERE prompt_id = $id)
        ORDER BY m.name, m.version""", {"id": prompt_id})


def prompt_bon_picks(con, prompt_id: str) -> list[tuple[str, str]]:
    """(response_id, NAME@VERSION) of the Best-of-N picks made for this prompt."""
    return fetch_rows(con, """
        SELECT b.response_id, m.name || '@' || m.version FROM bon_picks b
        JOIN reward_models m ON m.rm_id = b.rm_id WHERE b.prompt_id = $id ORDER BY 2""", {"id": prompt_id})


def prompt_pair_roles(con, prompt_id: str) -> list[tuple[str, int, int]]:
    """(response_id, times chosen, times rejected) over the prompt's pairs."""
    return fetch_rows(con, """
        SELECT id, count(*) FILTER (WHERE role = 'chosen'), count(*) FILTER (WHERE role = 'rejected') FROM (
            SELECT chosen_id AS id, 'chosen' AS role FROM pairs WHERE prompt_id = $id
            UNION ALL SELECT rejected_id, 'rejected' FROM pairs WHERE prompt_id = $id) GROUP BY id""",
        {"id": prompt_id})


def sources_and_tags(con) -> tuple[list[str], list[str]]:
    """Every prompt source and every tag, sorted."""
    sources = [r[0] for r in fetch_rows(con, "SELECT DISTINCT source FROM prompts ORDER BY 1")]
    tags = [r[0] for r in fetch_rows(con, "SELECT DISTINCT unnest(tags) FROM prompts ORDER BY 1")]
    return sources, tags
