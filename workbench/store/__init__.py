"""The DuckDB store: one file holding prompts, responses, scores, runs, pairs and exports.

SQL lives in this package only:

    connection.py      Store: short-lived connections with retries; duckdb.Error wrapped as StoreError
    migrations.py      the schema, as append-only numbered migrations
    queries/           the shared queries, one module per concern (see its docstring)
    bulk_import.py, content_ids.py   the import's bulk lane; content ids as DuckDB expressions
    combined_pairs.py, compare.py, sft.py, rollouts.py, registered_models.py
                       the SQL of the one workbench module each serves (`workbench.curate.combine`,
                       `workbench.models.compare`, the SFT export, the reward server's rollout log,
                       `workbench.models.allowed_models`)

Registered models leave the store as `workbench.models.registered_model.RegisteredModel`, other rows as
plain dicts, tuples or Arrow tables.
"""

from workbench.store.connection import Store, default_db_path

__all__ = ["Store", "default_db_path"]
