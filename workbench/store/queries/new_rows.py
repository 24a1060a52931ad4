"""Bulk inserts where the first writer wins: rows whose key is already stored are left alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

_KEYS = {"prompts": ("prompt_id",), "responses": ("response_id",), "scores": ("response_id", "rm_id"),
         "pairs": ("pair_id",)}


def insert_new(con, table_name: str, table: pa.Table) -> int:
    """Insert the Arrow rows whose key is not in `table_name` yet; returns how many went in.

    Column names come from the Arrow table (built by our code, never from user input);
    `created_at` is stamped here.
    """
    keys = _KEYS[table_name]
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    match = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    con.register("incoming", table)
    try:
        return count_changed(con, f"""
            INSERT INTO {table_name} ({columns}, created_at)
            SELECT {", ".join(f's."{c}"' for c in table.column_names)}, current_timestamp FROM incoming s
            WHERE NOT EXISTS (SELECT 1 FROM {table_name} t WHERE {match})""")
    finally:
        con.unregister("incoming")
