"""The DuckDB store: one file holding prompts, responses, scores, runs, pairs and exports.

SQL lives in this package only: `migrations.py` for the schema, `bulk_import.py` and
`content_ids.py` for the bulk import lane, the `queries` package (one module per concern) for the rest.
"""

from workbench.store.connection import Store, default_db_path

__all__ = ["Store", "default_db_path"]
