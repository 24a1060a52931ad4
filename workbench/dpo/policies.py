"""The policy registry: policies trained here by `workbench dpo train`, known by name.

A registered name works wherever a policy is asked for (`sample --policy NAME`, `bon`, the app's
Sample tab, `eval policy`, `round`): `policy_path` turns it into the directory of its merged
weights, which a plain `AutoModelForCausalLM.from_pretrained` loads. Anything that is not a
registered name (smollm2, a directory, a .gguf file) passes through unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.store import Store, queries


def lookup_policy(store: Store, ref: str) -> dict | None:
    """The registered policy named (or with the id) `ref`, or None."""
    with store.connect() as con:
        found = queries.get_policy(con, str(ref))
    if found and isinstance(found.get("hyper_parameters"), str):
        found["hyper_parameters"] = json.loads(found["hyper_parameters"])
    return found


def policy_path(store: Store, spec: str) -> str:
    """The weights directory of a registered policy name; any other spec unchanged."""
    found = lookup_policy(store, spec)
    if found is None:
        return str(spec)
    if not (Path(found["path"]) / "config.json").is_file():
        raise WorkbenchError(f"the weights of policy '{found['name']}' are gone from {found['path']}: restore "
                             "them, or train it again with `workbench dpo train`")
    return found["path"]


def list_policies(store: Store) -> list[dict]:
    with store.connect() as con:
        return queries.list_policies(con)


def register_policy(store: Store, name: str, path: str | Path, *, base: str, reference: str, export_hash: str,
                    hyper_parameters: dict, run_id: str) -> dict:
    """Register merged weights under `name` (idempotent for the same weights and name)."""
    from engine.backbone import model_fingerprint

    path = Path(path).resolve()
    policy_id = model_fingerprint(path)

    def write(con) -> dict:
        existing = queries.get_policy(con, name)
        if existing is not None:
            if existing["policy_id"] != policy_id:
                raise WorkbenchError(f"a policy named '{name}' exists already ({existing['path']}): choose another "
                                     "--name")
            return existing
        queries.insert_policy(con, policy_id, name, str(path), base, reference, export_hash, hyper_parameters, run_id)
        return queries.get_policy(con, name)

    return store.write(write)


def check_name_free(store: Store, name: str, out_dir: Path) -> None:
    """Refuse a name that another directory's policy holds already."""
    found = lookup_policy(store, name)
    if found is not None and Path(found["path"]).resolve().parent != out_dir.resolve():
        raise WorkbenchError(f"a policy named '{name}' exists already ({found['path']}): choose another --name")
