"""SQL: the model directories the store knows, which the app may load (`workbench.models.allowed_models`)."""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_rows


def policy_paths(con) -> list[str]:
    """Policy directories that generation runs used (as resolved when they ran) and those of the
    policies trained here (`workbench dpo train`), newest first."""
    return [path for (path,) in fetch_rows(con, """
        SELECT path FROM (
            SELECT json_extract_string(config, '$.policy.path') AS path, max(started_at) AS last_used
            FROM runs WHERE kind = 'generation' GROUP BY 1
            UNION ALL SELECT path, created_at FROM policies)
        WHERE path IS NOT NULL GROUP BY path ORDER BY max(last_used) DESC, path""")]


def reward_model_paths(con) -> list[str]:
    """Weights directories of the registered reward models."""
    return [path for (path,) in fetch_rows(
        con, "SELECT DISTINCT path FROM reward_models WHERE path IS NOT NULL ORDER BY 1")]
