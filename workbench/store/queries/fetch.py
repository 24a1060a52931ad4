"""Run one statement and return its result in the shape the caller needs."""

from __future__ import annotations

from typing import Any

import duckdb


def fetch_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[tuple]:
    """Every result row, as tuples."""
    return con.execute(sql, params or []).fetchall()


def fetch_value(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> Any:
    """The first column of the first row, or None when there is no row."""
    result = con.execute(sql, params or []).fetchall()
    return result[0][0] if result else None


def fetch_dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[dict]:
    """Every result row, as {column: value}."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def count_changed(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> int:
    """How many rows an INSERT, UPDATE or DELETE changed (DuckDB returns the count as its result)."""
    result = con.execute(sql, params or []).fetchall()
    return int(result[0][0]) if result else 0
