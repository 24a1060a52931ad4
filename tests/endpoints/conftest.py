"""A store with prompts, and the misbehaving stand-in server (started once per module)."""

from __future__ import annotations

import pytest

from tests.endpoints.servers import stand_in
from tests.workbench.conftest import write_jsonl
from workbench.ingest.importer import import_files
from workbench.store import Store, queries


def store_with_prompts(path, count: int) -> Store:
    store = Store(path / "endpoints.duckdb", timeout=30)
    records = [{"prompt": f"Prompt number {i}: say something."} for i in range(count)]
    import_files(store, [write_jsonl(path / "prompts.jsonl", records)], source="demo", progress=False)
    return store


def generated(store: Store) -> list[dict]:
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT prompt_id, sample_index, text, n_tokens, finish_reason, seed, run_id, flag_truncated
            FROM responses WHERE origin = 'generated' ORDER BY prompt_id, sample_index""")


def runs(store: Store) -> list[dict]:
    with store.connect() as con:
        return queries.fetch_dicts(con, "SELECT run_id, kind, status, config, summary, error FROM runs "
                                        "WHERE kind IN ('generation', 'scoring')")


@pytest.fixture(scope="module")
def stand_in_server():
    """(base URL, hits per behaviour) of the misbehaving server."""
    with stand_in() as server:
        yield server


@pytest.fixture
def prompts(tmp_path) -> Store:
    return store_with_prompts(tmp_path, 4)
