"""The export query: the filtered pairs, one per distinct text triple, in the requested columns."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from workbench.store.queries.fetch import fetch_rows, fetch_value
from workbench.store.queries.pair_filter import PAIR_COLUMNS, PAIR_FILTER, PAIR_JOINS, pair_filter_params

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

# One row per distinct (prompt, chosen text, rejected text): when several pairs say the same
# thing, the one with the largest margin (then the lowest pair id) represents them.
EXPORT_SELECTED = f"""
WITH selected AS (
    SELECT * FROM (SELECT {PAIR_COLUMNS}, p.messages, c.text AS chosen_text, r.text AS rejected_text {PAIR_JOINS})
    WHERE {PAIR_FILTER}
    -- the 64-bit hash first: partitions split on it, and the texts only break its (rare) collisions
    QUALIFY row_number() OVER (PARTITION BY hash(prompt_id, chosen_text, rejected_text), prompt_id, chosen_text,
                                            rejected_text
                               ORDER BY margin DESC NULLS LAST, pair_id) = 1
)
"""

# Output columns by schema. `messages` is stored as [{"content": ..., "role": ...}, ...].
_MESSAGES = "CAST(messages AS STRUCT(role VARCHAR, content VARCHAR)[])"
_REPLY = "[{{'role': 'assistant', 'content': {0}}}]"
_TRANSCRIPT = """CASE WHEN len({m}) = 1 AND {m}[1].role = 'user' THEN {m}[1].content
    ELSE array_to_string(list_transform({m}, lambda x: chr(10) || chr(10)
        || CASE x.role WHEN 'user' THEN 'Human' WHEN 'assistant' THEN 'Assistant' ELSE 'System' END
        || ': ' || x.content), '') || chr(10) || chr(10) || 'Assistant:' END""".format(m=_MESSAGES)
_STANDARD_REPLY = "CASE WHEN len({m}) = 1 AND {m}[1].role = 'user' THEN '' ELSE ' ' END || {{0}}".format(m=_MESSAGES)
EXPORT_COLUMNS = {
    "conversational": [("prompt", _MESSAGES), ("chosen", _REPLY.format("chosen_text")),
                       ("rejected", _REPLY.format("rejected_text"))],
    "standard": [("prompt", _TRANSCRIPT), ("chosen", _STANDARD_REPLY.format("chosen_text")),
                 ("rejected", _STANDARD_REPLY.format("rejected_text"))],
    "scores": [("score_chosen", "score_chosen"), ("score_rejected", "score_rejected"), ("margin", "margin")],
    # TRL's RewardTrainer subtracts a `margin` column from the reward difference when it is there
    "margin": [("margin", "margin")],
    "reply_scores": [("score_chosen", "score_chosen"), ("score_rejected", "score_rejected")],
    "provenance": [(c, c) for c in ("pair_id", "prompt_id", "chosen_id", "rejected_id", "labeler", "strategy",
                                    "source", "run_id")],
}


def export_rows_sql(column_sets: list[str], limit: int | None, with_labeler: bool = False) -> str:
    """The export query: its typed columns (and the labeler, for counting), ordered by pair id."""
    columns = [(name, expr) for key in column_sets for name, expr in EXPORT_COLUMNS[key]]
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns)
    if with_labeler:
        select += ", labeler AS export_labeler"
    sql = EXPORT_SELECTED + f"SELECT {select} FROM selected ORDER BY pair_id"
    if limit is not None:
        sql += " LIMIT $limit"
    return sql


def _export_params(spec: dict, limit: int | None) -> dict:
    params = pair_filter_params(spec)
    if limit is not None:
        params["limit"] = int(limit)
    return params


def export_reader(con, spec: dict, column_sets: list[str], limit: int | None, batch_rows: int = 16384):
    """The export's rows as Arrow record batches."""
    return con.sql(export_rows_sql(column_sets, limit), params=_export_params(spec, limit)).to_arrow_reader(batch_rows)


def stage_export(con, spec: dict, column_sets: list[str], limit: int | None) -> dict:
    """Run the export query once into the temporary table `export_rows`; rows per labeler."""
    con.execute("CREATE OR REPLACE TEMP TABLE export_rows AS " + export_rows_sql(column_sets, limit, True),
                _export_params(spec, limit))
    return dict(fetch_rows(con, "SELECT export_labeler, count(*) FROM export_rows GROUP BY 1 ORDER BY 1"))


def pairs_without_margin(con, spec: dict, limit: int | None) -> int:
    """How many of the pairs an export writes have no margin (human labels)."""
    sql = EXPORT_SELECTED + "SELECT count(*) FILTER (WHERE margin IS NULL) FROM (SELECT margin FROM selected " \
        "ORDER BY pair_id" + (" LIMIT $limit)" if limit is not None else ")")
    return fetch_value(con, sql, _export_params(spec, limit))


def stage_kto_export(con, spec: dict, with_scores: bool, with_provenance: bool, limit: int | None) -> dict:
    """The selected pairs as KTO's unpaired rows in `export_rows`: each pair's chosen reply with
    label true and its rejected reply with label false (the same prompt, reply and label once),
    in pair-id order; rows per labeler."""
    limited = "SELECT * FROM selected ORDER BY pair_id" + (" LIMIT $limit" if limit is not None else "")
    extra = (", score" if with_scores else "") + (", pair_id, response_id, labeler" if with_provenance else "")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE export_rows AS {EXPORT_SELECTED},
        sides AS (SELECT pair_id, prompt_id, messages, labeler, chosen_id AS response_id, chosen_text AS text,
                         true AS label, 0 AS side, score_chosen AS score FROM ({limited})
                  UNION ALL
                  SELECT pair_id, prompt_id, messages, labeler, rejected_id, rejected_text, false, 1, score_rejected
                  FROM ({limited}))
        SELECT {_MESSAGES} AS prompt, {_REPLY.format("text")} AS completion, label{extra},
               labeler AS export_labeler
        FROM sides
        QUALIFY row_number() OVER (PARTITION BY prompt_id, text, label ORDER BY pair_id, side) = 1
        ORDER BY pair_id, side""", _export_params(spec, limit))
    return dict(fetch_rows(con, "SELECT export_labeler, count(*) FROM export_rows GROUP BY 1 ORDER BY 1"))


def write_staged_export_jsonl(con, path: str) -> None:
    """`export_rows` as JSON Lines (DuckDB's writer: compact, keys in column order), in pair-id order."""
    con.execute("COPY (SELECT * EXCLUDE (export_labeler) FROM export_rows) TO $path (FORMAT json)", {"path": path})


def staged_export_table(con) -> pa.Table:
    """`export_rows` as one Arrow table (for Parquet and `datasets`)."""
    return con.sql("SELECT * EXCLUDE (export_labeler) FROM export_rows").to_arrow_table()


def count_export_pairs(con, spec: dict) -> int:
    """How many rows the export would write, before any limit."""
    return fetch_value(con, EXPORT_SELECTED + "SELECT count(*) FROM selected", pair_filter_params(spec))


def selected_pairs(con, spec: dict) -> list[tuple]:
    """(pair_id, prompt_id, messages JSON, chosen text, rejected text) of the pairs an export would write."""
    return fetch_rows(con, EXPORT_SELECTED + """
        SELECT pair_id, prompt_id, messages, chosen_text, rejected_text FROM selected ORDER BY pair_id""",
                      pair_filter_params(spec))


def insert_export(con, export_id: str, run_id: str, path: str, fmt: str, schema: str, spec: dict,
                  row_count: int, content_hash: str, store_hash: str) -> None:
    """Record a written export (path, format, filter, rows and hashes)."""
    con.execute(
        "INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
        [export_id, run_id, path, fmt, schema, json.dumps(spec), row_count, content_hash, store_hash],
    ).fetchall()
