"""Reward models known to the store: registered by content hash, referred to by name.

`--rm` accepts `NAME` (its newest version), `NAME@VERSION`, an rm id, or a model directory
(registered on first use, under the directory's name). What comes back is a
`workbench.models.registered_model.RegisteredModel`: the operations on a registered model live there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workbench.errors import NotFound
from workbench.models.registered_model import RegisteredModel
from workbench.store import Store, queries


def register_reward_model(store: Store, path: str | Path, name: str | None = None,
                          run_id: str | None = None, fmt: str = "auto", label_index: int | None = None,
                          trust_remote_code: bool = False) -> RegisteredModel:
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

    def write(con) -> RegisteredModel:
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


def resolve_reward_model(store: Store, ref: str, trust_remote_code: bool = False) -> RegisteredModel:
    """Find a reward model by name, name@version, id, or directory (which gets registered, format detected)."""
    with store.connect() as con:
        found = queries.lookup_reward_model(con, ref)
        if found:
            return found
        known = [m.label for m in queries.list_reward_models(con)]
    if Path(ref).is_dir():
        return register_reward_model(store, ref, trust_remote_code=trust_remote_code)
    hint = f"known: {', '.join(known)}" if known else "the store has none yet: train one with `workbench rm train`"
    raise NotFound(f"reward model '{ref}' not found ({hint}); a model directory also works")


def list_with_formats(store: Store) -> list[dict]:
    """Every registered model with its number of scores, format, pooling and label index (`rm list`)."""
    with store.connect() as con:
        models, counts = queries.list_reward_models(con), queries.score_counts(con)
    return [{"rm_id": m.rm_id, "name": m.name, "version": m.version, "path": m.path, "created_at": m.created_at,
             "n_scores": counts.get(m.rm_id, 0), **m.format_fields()} for m in models]
