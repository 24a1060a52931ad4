"""SQL of the SFT (rejection-sampling) export: each prompt's best replies by one reward model.

The candidates and the tie rule are the pair builder's own (`queries.pairs._CANDIDATES`, `_BEST_KEY`):
identical texts count once, and among equal scores the shorter reply, then the lower id, wins.
"""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_rows
from workbench.store.queries.pairs import _BEST_KEY, _CANDIDATES

# Filters on the candidate replies (responses r, scores s), applied before the best are picked.
_WHERE = """
    ($source IS NULL OR r.prompt_id IN (SELECT prompt_id FROM prompts WHERE source = $source))
    AND ($tag IS NULL OR r.prompt_id IN (SELECT prompt_id FROM prompts WHERE list_contains(tags, $tag)))
    AND ($min_score IS NULL OR s.score >= $min_score)
    AND ($max_score IS NULL OR s.score <= $max_score)
    AND ($min_chars IS NULL OR r.n_chars >= $min_chars)
    AND ($max_chars IS NULL OR r.n_chars <= $max_chars)
    AND (NOT $exclude_flagged OR NOT (coalesce(r.flag_truncated, false) OR coalesce(r.flag_repetition, false)))
"""

_MESSAGES = ("list_concat(CAST(p.messages AS STRUCT(role VARCHAR, content VARCHAR)[]), "
             "[{'role': 'assistant', 'content': r.text}])")
SFT_COLUMNS = {
    "messages": [("messages", _MESSAGES)],
    "scores": [("score", "k.score")],
    "provenance": [("prompt_id", "k.prompt_id"), ("response_id", "k.response_id"), ("labeler", "$labeler"),
                   ("rank", "k.sft_rank"), ("source", "p.source"), ("run_id", "r.run_id")],
}


def sft_rows_sql(column_sets: list[str], limit: int | None) -> str:
    """The SFT query: each prompt's best `$top` candidates by `$rm`, ordered by prompt id then rank."""
    columns = [(name, expr) for key in column_sets for name, expr in SFT_COLUMNS[key]]
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns)
    sql = _CANDIDATES.format(where=_WHERE, scores="scores") + f"""
, ranked AS (SELECT *, row_number() OVER (PARTITION BY prompt_id ORDER BY {_BEST_KEY}) AS sft_rank FROM cand)
SELECT {select}, $labeler AS export_labeler
FROM ranked k JOIN responses r ON r.response_id = k.response_id JOIN prompts p ON p.prompt_id = k.prompt_id
WHERE k.sft_rank <= $top ORDER BY k.prompt_id, k.sft_rank"""
    return sql + (" LIMIT $limit" if limit is not None else "")


def _sft_params(spec: dict, labeler: str, top: int, limit: int | None) -> dict:
    params = {k: spec.get(k) for k in ("source", "tag", "min_score", "max_score", "min_chars", "max_chars")}
    params |= {"exclude_flagged": bool(spec.get("exclude_flagged")), "rm": spec["rm"], "labeler": labeler,
               "top": int(top)}
    if limit is not None:
        params["limit"] = int(limit)
    return params


def stage_sft_export(con, spec: dict, labeler: str, top: int, column_sets: list[str], limit: int | None) -> dict:
    """The SFT rows into the temporary table `export_rows` (as `queries.stage_export` does); rows per labeler."""
    params = _sft_params(spec, labeler, top, limit)
    con.execute("CREATE OR REPLACE TEMP TABLE export_rows AS " + sft_rows_sql(column_sets, limit), params)
    return dict(fetch_rows(con, "SELECT export_labeler, count(*) FROM export_rows GROUP BY 1 ORDER BY 1"))


def sft_preview(con, spec: dict, labeler: str, top: int, page_size: int) -> tuple[int, list[tuple]]:
    """(rows the SFT export with these values writes, its first `page_size` rows as (prompt text,
    reply text, score, rank, response id)): the export's own query, counted."""
    params = _sft_params(spec, labeler, top, None)
    con.execute("CREATE OR REPLACE TEMP TABLE sft_preview AS " + sft_rows_sql(["scores", "provenance"], None), params)
    try:
        total = fetch_rows(con, "SELECT count(*) FROM sft_preview")[0][0]
        rows = fetch_rows(con, """
            SELECT p.text, r.text, k.score, k.rank, k.response_id
            FROM (SELECT *, row_number() OVER () AS n FROM sft_preview) k
            JOIN prompts p ON p.prompt_id = k.prompt_id JOIN responses r ON r.response_id = k.response_id
            ORDER BY k.n LIMIT ?""", [page_size])
    finally:
        con.execute("DROP TABLE IF EXISTS sft_preview")
    return int(total), rows
