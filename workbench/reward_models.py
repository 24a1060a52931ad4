"""Reward models known to the store: registered by content hash, referred to by name.

`--rm` accepts `NAME` (its newest version), `NAME@VERSION`, an rm id, or a model directory
(registered on first use, under the directory's name).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workbench.errors import NotFound, WorkbenchError
from workbench.store import Store, queries


def register_reward_model(store: Store, path: str | Path, name: str | None = None,
                          run_id: str | None = None, fmt: str = "auto", label_index: int | None = None,
                          trust_remote_code: bool = False) -> dict:
    """Register a reward-model directory (idempotent: same weights and label, same row).

    The directory is checked first (`engine.rm_formats.inspect_reward_model`): no model, no
    scoring head, a multi-objective head without `label_index`, or weights that do not fit the
    config are refused and nothing is written. The format, pooling, label index and the weights'
    fingerprint are kept in the model's config.
    """
    from engine.backbone import model_fingerprint
    from engine.rm_formats import inspect_reward_model

    path = Path(path).resolve()
    if not (path / "config.json").is_file():
        raise NotFound(f"{path} is not a reward-model directory (no config.json)")
    spec = inspect_reward_model(path, fmt, label_index, trust_remote_code)
    fingerprint = model_fingerprint(path)
    rm_id = fingerprint[:32] if label_index is None else \
        hashlib.sha256(f"{fingerprint}:label{label_index}".encode()).hexdigest()[:32]
    config = json.loads((path / "config.json").read_text())
    summary = {k: config.get(k) for k in ("architectures", "model_type", "reward_token", "reward_token_id",
                                          "hidden_size", "num_hidden_layers") if _recordable(config.get(k))}
    summary |= {"reward_format": spec.as_dict(), "format": spec.format, "pooling": spec.pooling,
                "label_index": label_index, "fingerprint": fingerprint}

    def write(con) -> dict:
        existing = queries.get_reward_model(con, rm_id)
        if existing is None:
            queries.insert_reward_model(con, rm_id, name or path.name, str(path), summary, run_id)
            existing = queries.get_reward_model(con, rm_id)
        return existing

    return store.write(write)


def _recordable(value) -> bool:
    """Whether a config value can be kept in the store's JSON (NaN and Infinity cannot)."""
    try:
        json.dumps(value, allow_nan=False)
        return value is not None
    except (TypeError, ValueError):
        return False


def reward_format(model: dict, trust_remote_code: bool = False):
    """The `engine.rm_formats.RewardFormat` a registered model was recorded with.

    Rows registered before formats were recorded: `rm train`'s (they name a reward token) are
    workbench models; any other is detected from its directory now.
    """
    from engine.rm_formats import POOLING, RewardFormat, inspect_reward_model

    config = model_config(model)
    if "reward_format" in config:
        return RewardFormat.from_dict(config["reward_format"])
    if config.get("reward_token_id") is not None or not model.get("path"):
        return RewardFormat("workbench", POOLING["workbench"], reward_token_id=config.get("reward_token_id"))
    return inspect_reward_model(model["path"], trust_remote_code=trust_remote_code)


def load_registered_scorer(model: dict, *, max_length: int, precision: str, trust_remote_code: bool = False,
                           device: str = "auto"):
    """A Scorer for a registered model: its recorded format, after `registered_weights` checked its weights."""
    from engine.scoring import load_scorer

    if not model["path"]:
        raise WorkbenchError(f"reward model {describe(model)} has no weights here (its scores were imported)")
    weights = registered_weights(model)
    return load_scorer(weights, max_length=max_length, precision=precision, device=device,
                       spec=reward_format(model, trust_remote_code), trust_remote_code=trust_remote_code)


def resolve_reward_model(store: Store, ref: str, trust_remote_code: bool = False) -> dict:
    """Find a reward model by name, name@version, id, or directory (which gets registered, format detected)."""
    with store.connect() as con:
        found = queries.lookup_reward_model(con, ref)
        if found:
            return found
        known = [f"{m['name']}@{m['version']}" for m in queries.list_reward_models(con)]
    if Path(ref).is_dir():
        return register_reward_model(store, ref, trust_remote_code=trust_remote_code)
    hint = f"known: {', '.join(known)}" if known else "the store has none yet: train one with `workbench rm train`"
    raise NotFound(f"reward model '{ref}' not found ({hint}); a model directory also works")


def registered_weights(model: dict) -> str:
    """The directory of a registered reward model, refused if its weights are no longer the ones
    registered: the fingerprint recorded in its config (its remote code included), or, for rows
    registered before fingerprints were kept, the rm id (the fingerprint's head). Cheap: the
    fingerprint is cached (in the workbench's cache) and reused while their sizes and mtimes are unchanged."""
    from engine.backbone import model_fingerprint

    path = Path(model["path"])
    if not (path / "config.json").is_file():
        raise WorkbenchError(f"the weights of {describe(model)} are gone from {path}: restore them, or register "
                             "the model's new location with `workbench rm register DIR`")
    config = model_config(model)
    recorded = config.get("fingerprint") or model["rm_id"]  # a label-index model's id is not the fingerprint
    if model_fingerprint(path)[:len(recorded)] != recorded:
        raise WorkbenchError(f"the weights in {path} changed since {describe(model)} was registered: register "
                             f"them as a new version with `workbench rm register {path} --name {model['name']}`")
    return str(path)


def model_config(model: dict) -> dict:
    """A registered model's stored config as a dict (DuckDB hands JSON columns back as text)."""
    config = model.get("config") or {}
    return json.loads(config) if isinstance(config, str) else config


def describe(model: dict) -> str:
    """A reward model's label, NAME@VERSION."""
    return f"{model['name']}@{model['version']}"


def list_with_formats(store: Store) -> list[dict]:
    """`queries.list_reward_models` rows with each model's format, pooling and label index."""
    with store.connect() as con:
        models = queries.list_reward_models(con)
        rows = {m["rm_id"]: queries.get_reward_model(con, m["rm_id"]) for m in models}
    return [m | format_fields(rows[m["rm_id"]]) for m in models]


def format_fields(model: dict) -> dict:
    """format, pooling and label_index of a registered model, for listings and manifests."""
    if not model.get("path"):
        config = model_config(model)
        kind = "combined" if "combine" in config else "imported"  # `workbench.combine`, or scores brought in
        return {"format": kind, "pooling": None, "label_index": None}
    from engine.errors import EngineError

    try:
        spec = reward_format(model)
    except EngineError:  # an old row whose directory cannot be read as any format (or needs remote code)
        return {"format": "unknown", "pooling": None, "label_index": None}
    return {"format": spec.format, "pooling": spec.pooling, "label_index": spec.label_index}
