"""The app's curation index: per-pair filter columns copied into an in-memory DuckDB, so a
filter change counts and pages pairs without joining the store's tables again.

It applies the export's own filter (`pair_filter.PAIR_FILTER`) and rule (one pair per distinct
prompt/chosen/rejected text, the largest margin first); tests/workbench/test_curation.py checks
its counts against the export query for many filters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from workbench.store.queries.fetch import fetch_dicts, fetch_rows, fetch_value
from workbench.store.queries.pair_filter import PAIR_COLUMNS, PAIR_FILTER, PAIR_JOINS, pair_filter_params

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa


def store_version(con) -> tuple:
    """Changes whenever pairs, prompts, responses, reward models or data runs change (cheap counts).

    Responses' curation flags are updated inside a generation run just before the run is marked
    finished, so `finished_at` moves after them. Exports change no pair: they are left out.
    """
    return fetch_rows(con, """
        WITH data_runs AS (SELECT * FROM runs WHERE kind <> 'export')
        SELECT (SELECT count(*) FROM pairs), (SELECT count(*) FROM prompts), (SELECT count(*) FROM responses),
               (SELECT count(*) FROM reward_models), (SELECT count(*) FROM data_runs),
               (SELECT max(coalesce(finished_at, started_at)) FROM data_runs),
               (SELECT count(*) FROM data_runs WHERE status = 'running')""")[0]


# `PAIR_COLUMNS` per stored pair, plus `text_group`, which numbers the distinct (prompt, chosen
# text, rejected text) triples (an export keeps one pair per triple), and the rowids that let a
# page fetch its texts without scanning every response id (`texts_by_row`).
PAIR_INDEX = f"""
SELECT {PAIR_COLUMNS},
       dense_rank() OVER (ORDER BY pr.prompt_id, c.text, r.text) AS text_group,
       p.rowid AS prompt_row, c.rowid AS chosen_row, r.rowid AS rejected_row
{PAIR_JOINS}
"""


def pair_index_rows(con) -> pa.Table:
    """The index's rows, read from the store."""
    return con.sql(PAIR_INDEX).to_arrow_table()


def load_pair_index(mem: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Replace the in-memory index with `table`, adding each triple's size (1 for nearly all) and
    `facet`, a small integer per (labeler, strategy) that the breakdown groups by (grouping by the
    two strings cost 3x more at 1M pairs); `pair_facets` maps it back."""
    mem.register("incoming_index", table)
    try:
        mem.execute("CREATE OR REPLACE TABLE pair_index AS SELECT *, "
                    "count(*) OVER (PARTITION BY text_group) AS group_size, "
                    "dense_rank() OVER (ORDER BY labeler, strategy)::INTEGER AS facet FROM incoming_index")
        mem.execute("CREATE OR REPLACE TABLE pair_facets AS SELECT DISTINCT facet, labeler, strategy FROM pair_index")
    finally:
        mem.unregister("incoming_index")


def index_size(mem) -> int:
    """Pairs in the in-memory index."""
    return fetch_value(mem, "SELECT count(*) FROM pair_index")


# The pairs an export would write: per triple, the largest margin (then the lowest pair id).
# Singleton triples skip the window. Each branch applies the filter itself: a CTE read twice is
# materialised with every column, which tripled the time of a filter change at 300k pairs.
_SELECTED_COLUMNS = "rowid AS index_row, pair_id, facet"
_INDEX_SELECTED = f"""
WITH selected AS (
    SELECT {_SELECTED_COLUMNS} FROM pair_index WHERE group_size = 1 AND {PAIR_FILTER}
    UNION ALL
    (SELECT {_SELECTED_COLUMNS} FROM pair_index WHERE group_size > 1 AND {PAIR_FILTER}
     QUALIFY row_number() OVER (PARTITION BY text_group ORDER BY margin DESC NULLS LAST, pair_id) = 1)
)
"""


def index_breakdown(mem, values: dict) -> list[tuple[str, str, int]]:
    """(labeler, strategy, pairs) of the pairs a filter's values select."""
    return fetch_rows(mem, _INDEX_SELECTED + """, counts AS (SELECT facet, count(*) AS pairs FROM selected GROUP BY facet)
        SELECT f.labeler, f.strategy, c.pairs FROM counts c JOIN pair_facets f USING (facet) ORDER BY ALL""",
                      pair_filter_params(values))


def index_selected_count(mem, values: dict) -> int:
    """How many pairs a filter's values select (before `limit`), as the export counts them."""
    return fetch_value(mem, _INDEX_SELECTED + "SELECT count(*) FROM selected", pair_filter_params(values))


def index_page(mem, values: dict, limit: int, offset: int) -> list[dict]:
    """The selection's rows in export order (by pair id): the page's index rows first (sorting only
    the ids), then their columns."""
    rows = [r for (r,) in fetch_rows(mem, _INDEX_SELECTED + "SELECT index_row FROM selected ORDER BY pair_id "
                                          "LIMIT $limit OFFSET $offset",
                                     pair_filter_params(values) | {"limit": limit, "offset": offset})]
    return fetch_dicts(mem, """
        SELECT pair_id, prompt_id, chosen_id, rejected_id, labeler, strategy, score_chosen, score_rejected,
               margin, chosen_chars, rejected_chars, flagged, prompt_row, chosen_row, rejected_row
        FROM pair_index WHERE rowid = ANY($rows) ORDER BY pair_id""", {"rows": rows})


def texts_by_id(con, response_ids: list[str], prompt_ids: list[str]) -> tuple[dict, dict]:
    """({response_id: text}, {prompt_id: text}); scans the id columns."""
    responses = dict(fetch_rows(con, "SELECT response_id, text FROM responses "
                                     "WHERE response_id IN (SELECT unnest($ids))", {"ids": response_ids}))
    prompts = dict(fetch_rows(con, "SELECT prompt_id, text FROM prompts WHERE prompt_id IN (SELECT unnest($ids))",
                              {"ids": prompt_ids}))
    return responses, prompts


def texts_by_row(con, response_rows: list[int], prompt_rows: list[int]) -> tuple[dict, dict]:
    """Like `texts_by_id`, by rowid (a point lookup, ~10x faster); keyed by the rows' ids, so a
    caller can check it got the rows it expected."""
    responses = dict(fetch_rows(con, "SELECT response_id, text FROM responses WHERE rowid = ANY($rows)",
                                {"rows": response_rows}))
    prompts = dict(fetch_rows(con, "SELECT prompt_id, text FROM prompts WHERE rowid = ANY($rows)",
                              {"rows": prompt_rows}))
    return responses, prompts
