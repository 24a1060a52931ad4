"""Counts over the whole store: table sizes, scores per reward model, pairs per labeler, imports."""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_dicts, fetch_rows

COUNTED_TABLES = ("prompts", "responses", "scores", "pairs", "reward_models", "runs", "exports")
DATA_TABLES = ("prompts", "responses", "scores", "pairs", "reward_models")  # what runs other than exports write


def table_counts(con, tables: tuple[str, ...] = COUNTED_TABLES) -> dict:
    """{table: row count} for the named tables (names from `COUNTED_TABLES` only)."""
    unknown = set(tables) - set(COUNTED_TABLES)
    if unknown:
        raise KeyError(f"not a counted table: {sorted(unknown)}")
    return dict(fetch_rows(con, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)))


def store_fingerprint_rows(con) -> list[tuple]:
    """What the store's content hash covers: completed data runs and table sizes."""
    runs = fetch_rows(con, "SELECT run_id, kind, status FROM runs WHERE kind <> 'export' ORDER BY run_id")
    return runs + sorted(table_counts(con, DATA_TABLES).items())


def scores_by_reward_model(con) -> dict:
    """{NAME@VERSION: scores}, every reward model included."""
    return dict(fetch_rows(con, """
        SELECT m.name || '@' || m.version, count(s.response_id)
        FROM reward_models m LEFT JOIN scores s ON s.rm_id = m.rm_id GROUP BY 1 ORDER BY 1"""))


def pairs_by_labeler(con) -> dict:
    """{LABELER: {STRATEGY: pairs}}, the labeler being NAME@VERSION or human."""
    counts: dict[str, dict[str, int]] = {}
    for labeler, strategy, pairs in fetch_rows(con, """
            SELECT coalesce(m.name || '@' || m.version, 'human'), pr.strategy, count(*)
            FROM pairs pr LEFT JOIN reward_models m ON m.rm_id = pr.rm_id GROUP BY 1, 2 ORDER BY 1, 2"""):
        counts.setdefault(labeler, {})[strategy] = pairs
    return counts


def responses_by_origin(con) -> dict:
    """{origin: responses} (imported, generated)."""
    return dict(fetch_rows(con, "SELECT origin, count(*) FROM responses GROUP BY 1 ORDER BY 1"))


def import_summaries(con) -> list[dict]:
    """The completed import runs (id, start, summary JSON), oldest first."""
    return fetch_dicts(con, """
        SELECT run_id, started_at, summary FROM runs WHERE kind = 'import' AND status = 'completed'
        ORDER BY started_at""")
