"""The `reward_models` table: trained models (with a path) and external scorers (without).

Rows leave here as `RegisteredModel`s (their JSON config parsed), never as dicts.
"""

from __future__ import annotations

import json

from workbench.errors import NotFound
from workbench.models.registered_model import RegisteredModel
from workbench.store.queries.fetch import fetch_dicts, fetch_rows, fetch_value


def get_reward_model(con, rm_id: str) -> RegisteredModel | None:
    """The model by id, or None."""
    found = fetch_dicts(con, "SELECT * FROM reward_models WHERE rm_id = ?", [rm_id])
    return RegisteredModel.from_row(found[0]) if found else None


def find_reward_models(con, name: str) -> list[RegisteredModel]:
    """Reward models called `name`, newest version first."""
    rows = fetch_dicts(con, "SELECT * FROM reward_models WHERE name = ? ORDER BY version DESC", [name])
    return [RegisteredModel.from_row(row) for row in rows]


def lookup_reward_model(con, ref: str) -> RegisteredModel | None:
    """A reward model given as its id, NAME (newest version) or NAME@VERSION; None if there is none."""
    found = get_reward_model(con, ref)
    if found:
        return found
    name, _, version = ref.rpartition("@") if "@" in ref else (ref, "", "")
    return next((m for m in find_reward_models(con, name) if not version or str(m.version) == version), None)


def rm_id_for(con, ref: str) -> str:
    """The id of a reward model given as id, NAME (newest version) or NAME@VERSION, in one connection."""
    found = lookup_reward_model(con, ref)
    if found is None:
        raise NotFound(f"reward model '{ref}' not found")
    return found.rm_id


def insert_reward_model(con, rm_id: str, name: str, path: str | None, config: dict, run_id: str | None) -> int:
    """Register a model under `name` as its next version; returns that version."""
    version = fetch_value(con, "SELECT coalesce(max(version), 0) + 1 FROM reward_models WHERE name = ?", [name])
    con.execute(
        "INSERT INTO reward_models (rm_id, name, version, path, config, run_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
        [rm_id, name, version, path, json.dumps(config), run_id],
    ).fetchall()
    return version


def list_reward_models(con) -> list[RegisteredModel]:
    """Every reward model, by name and version."""
    return [RegisteredModel.from_row(row)
            for row in fetch_dicts(con, "SELECT * FROM reward_models ORDER BY name, version")]


def score_counts(con) -> dict[str, int]:
    """How many scores each reward model has in the store, by rm id (models without scores absent)."""
    return dict(fetch_rows(con, "SELECT rm_id, count(*) FROM scores GROUP BY rm_id"))
