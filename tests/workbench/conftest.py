import json
from pathlib import Path

import pytest

from workbench.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "test.duckdb", timeout=10)


def write_jsonl(path: Path, records) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def table_counts(store: Store) -> dict:
    from workbench.store import queries

    with store.connect() as con:
        counts = queries.table_counts(con)
        counts["scores"] = queries.fetch_value(con, "SELECT count(*) FROM scores")
    return counts
