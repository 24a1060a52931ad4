"""SQL of the SFT (rejection-sampling) export: each prompt's best replies by one reward model.

The candidates and the tie rule are the pair builder's own (`queries.pairs.CANDIDATES`, `BEST_KEY`):
identical texts count once, and among equal scores the shorter reply, then the lower id, wins.
The reply filters are the pair filter's own (`queries.pair_filter.PAIR_FILTER` over `REPLY_AS_PAIR`).
"""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_rows
from workbench.store.queries.pair_filter import PAIR_FILTER, REPLY_AS_PAIR, pair_filter_params
from workbench.store.queries.pairs import BEST_KEY, CANDIDATES

# The candidate replies (responses r, scores s) that pass the pair filter, before the best are picked.
_WHERE = f"r.response_id IN (SELECT response_id FROM ({REPLY_AS_PAIR}) WHERE rm_id = $rm AND {PAIR_FILTER})"

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
    sql = CANDIDATES.format(where=_WHERE, scores="scores") + f"""
, ranked AS (SELECT *, row_number() OVER (PARTITION BY prompt_id ORDER BY {BEST_KEY}) AS sft_rank FROM cand)
SELECT {select}, $labeler AS export_labeler
FROM ranked k JOIN responses r ON r.response_id = k.response_id JOIN prompts p ON p.prompt_id = k.prompt_id
WHERE k.sft_rank <= $top ORDER BY k.prompt_id, k.sft_rank"""
    return sql + (" LIMIT $limit" if limit is not None else "")


def _sft_params(spec: dict, labeler: str, top: int, limit: int | None) -> dict:
    params = pair_filter_params(spec) | {"labeler": labeler, "top": int(top)}
    if limit is not None:
        params["limit"] = int(limit)
    return params


def stage_sft_export(con, spec: dict, labeler: str, top: int, column_sets: list[str], limit: int | None) -> dict:
    """The SFT rows into the temporary table `export_rows` (as `queries.stage_export` does); rows per labeler."""
    params = _sft_params(spec, labeler, top, limit)
    con.execute("CREATE OR REPLACE TEMP TABLE export_rows AS " + sft_rows_sql(column_sets, limit), params)
    return dict(fetch_rows(con, "SELECT export_labeler, count(*) FROM export_rows GROUP BY 1 ORDER BY 1"))


def stage_scored_export(con, spec: dict, labeler: str, limit: int | None) -> dict:
    """Every candidate reply of each prompt with its score (best first, the SFT tie rule) as one
    Best-of-N row per prompt in the temporary table `export_rows`; rows per labeler."""
    sql = CANDIDATES.format(where=_WHERE, scores="scores") + f"""
, texts AS (SELECT k.*, r.text FROM cand k JOIN responses r USING (response_id))
SELECT CAST(p.messages AS STRUCT(role VARCHAR, content VARCHAR)[]) AS prompt,
       list({{'text': t.text, 'score': t.score}} ORDER BY {BEST_KEY}) AS responses, $labeler AS export_labeler
FROM texts t JOIN prompts p ON p.prompt_id = t.prompt_id
GROUP BY p.prompt_id, p.messages ORDER BY p.prompt_id""" + (" LIMIT $limit" if limit is not None else "")
    params = pair_filter_params(spec) | {"labeler": labeler}
    if limit is not None:
        params["limit"] = int(limit)
    con.execute("CREATE OR REPLACE TEMP TABLE export_rows AS " + sql, params)
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
