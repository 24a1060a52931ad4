"""Reward models known to the store: registered by content hash, referred to by name.

`--rm` accepts `NAME` (its newest version), `NAME@VERSION`, an rm id, or a model directory
(registered on first use, under the directory's name).
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import NotFound, WorkbenchError
from workbench.store import Store, queries


def register_reward_model(store: Store, path: str | Path, name: str | None = None,
                          run_id: str | None = None) -> dict:
    """Register a reward-model directory (idempotent: same weights, same row)."""
    from engine.backbone import model_fingerprint

    path = Path(path).resolve()
    if not (path / "config.json").is_file():
        raise NotFound(f"{path} is not a reward-model directory (no config.json)")
    rm_id = model_fingerprint(path)[:32]
    config = json.loads((path / "config.json").read_text())
    summary = {k: config.get(k) for k in ("architectures", "model_type", "reward_token", "reward_token_id",
                                          "hidden_size", "num_hidden_layers") if k in config}

    def write(con) -> dict:
        existing = queries.get_reward_model(con, rm_id)
        if existing is None:
            queries.insert_reward_model(con, rm_id, name or path.name, str(path), summary, run_id)
            existing = queries.get_reward_model(con, rm_id)
        return existing

    return store.write(write)


def resolve_reward_model(store: Store, ref: str) -> dict:
    """Find a reward model by name, name@version, id, or directory (which gets registered)."""
    with store.connect() as con:
        found = queries.lookup_reward_model(con, ref)
        if found:
            return found
        known = [f"{m['name']}@{m['version']}" for m in queries.list_reward_models(con)]
    if Path(ref).is_dir():
        return register_reward_model(store, ref)
    hint = f"known: {', '.join(known)}" if known else "the store has none yet: train one with `workbench rm train`"
    raise NotFound(f"reward model '{ref}' not found ({hint}); a model directory also works")


def registered_weights(model: dict) -> str:
    """The directory of a registered reward model, refused if its weights are no longer the ones
    registered (the rm id is their fingerprint). Cheap: the fingerprint is cached beside the
    weights and reused while their sizes and mtimes are unchanged."""
    from engine.backbone import model_fingerprint

    path = Path(model["path"])
    if not (path / "config.json").is_file():
        raise WorkbenchError(f"the weights of {describe(model)} are gone from {path}: restore them, or register "
                             "the model's new location with `workbench rm register DIR`")
    if model_fingerprint(path)[:32] != model["rm_id"]:
        raise WorkbenchError(f"the weights in {path} changed since {describe(model)} was registered: register "
                             f"them as a new version with `workbench rm register {path} --name {model['name']}`")
    return str(path)


def describe(model: dict) -> str:
    """A reward model's label, NAME@VERSION."""
    return f"{model['name']}@{model['version']}"
