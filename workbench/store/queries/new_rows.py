"""Bulk inserts where the first writer wins: rows whose key is already stored are left alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

_KEYS = {"prompts": ("prompt_id",), "responses": ("response_id",), "scores": ("response_id", "rm_id"),
         "pairs": ("pair_id",)}


def insert_new(con, table_name: str, table: pa.Table, same: dict | None = None) -> int:
    """Insert the Arrow rows whose key is not in `table_name` yet; returns how many went in.

    Column names come from the Arrow table (built by our code, never from user input);
    `created_at` is stamped here. `same` names key columns that hold one value in every incoming
    row (a scoring run's `rm_id`): the check then reads only the stored rows with that value, which
    DuckDB skips by row group (at 20M scores, 0.9 -> 0.2 s per chunk of 1,024).
    """
    keys = _KEYS[table_name]
    same = same or {}
    for name, value in same.items():
        if name not in keys or set(table[name].unique().to_pylist()) - {value}:
            raise ValueError(f"insert_new: {name} is not a key of {table_name} with the one value {value!r}")
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    match = " AND ".join([f't."{k}" = $same_{k}' for k in same] + [f't."{k}" = s."{k}"' for k in keys])
    con.register("incoming", table)
    try:
        return count_changed(con, f"""
            INSERT INTO {table_name} ({columns}, created_at)
            SELECT {", ".join(f's."{c}"' for c in table.column_names)}, current_timestamp FROM incoming s
            WHERE NOT EXISTS (SELECT 1 FROM {table_name} t WHERE {match})""", {f"same_{k}": v for k, v in same.items()})
    finally:
        con.unregister("incoming")
