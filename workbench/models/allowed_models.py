"""Which models the app may load: `smollm2`, the policies trained here (by name or directory), the
directories the store already knows (policies of earlier generation runs, registered reward models) and what lies under the `--models-dir` given
to `workbench ui` at launch. Anything else typed in the browser, or sent to the app's API, is
refused: a job would otherwise load (or convert) any file the server can read.

    allowed = AllowedModels(models_dir="~/models")
    allowed.choices(store)                # what the app offers
    allowed.check_model(store, spec)      # the spec, or WorkbenchError naming the allowed places
    allowed.check_reward_model(store, ref)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.store import Store, queries
from workbench.store import registered_models

SMOLLM2 = "smollm2"
MAX_LISTED = 200  # models offered from --models-dir (a huge tree must not stall the page)


@dataclass(frozen=True)
class AllowedModels:
    """The places the app may load models from; see the module docstring."""

    models_dir: Path | None = None

    def __post_init__(self):
        if self.models_dir is not None:
            given = Path(self.models_dir).expanduser()
            if not given.is_dir():
                raise WorkbenchError(f"--models-dir {self.models_dir} is not a directory")
            object.__setattr__(self, "models_dir", given.resolve())
            object.__setattr__(self, "_roots", (given.resolve(), Path(os.path.normpath(given.absolute()))))

    def _registered(self, store: Store) -> tuple[list[str], list[str]]:
        with store.connect() as con:
            return registered_models.policy_paths(con), registered_models.reward_model_paths(con)

    def in_models_dir(self) -> list[str]:
        """Model directories (with a config.json) and .gguf files up to two levels under --models-dir."""
        if self.models_dir is None:
            return []
        found = set()
        for pattern in ("*/config.json", "*/*/config.json", "*.gguf", "*/*.gguf"):
            found.update(str(path.parent if path.name == "config.json" else path)
                         for path in self.models_dir.glob(pattern))
        return sorted(found)[:MAX_LISTED]

    def choices(self, store: Store) -> list[str]:
        """What the app offers as policy or base model: smollm2, the names of policies trained here,
        known policy directories, --models-dir's models."""
        policies, _ = self._registered(store)
        existing = [p for p in policies if Path(p).is_dir()]
        with store.connect() as con:
            trained = [p["name"] for p in queries.list_policies(con) if Path(p["path"]).is_dir()]
        return list(dict.fromkeys([SMOLLM2, *trained, *existing, *self.in_models_dir()]))

    def places(self) -> str:
        where = f"a model under {self.models_dir}" if self.models_dir else \
            "a model under a --models-dir given to `workbench ui` at launch (none was given)"
        return f"smollm2, a policy or reward model the store already knows, or {where}"

    def check_model(self, store: Store, spec: str) -> str:
        """`spec` (stripped) if the app may load it as a policy or base model; else WorkbenchError."""
        spec = (spec or "").strip()
        if spec == SMOLLM2 or self._registered_policy(store, spec):
            return spec
        path = Path(spec).expanduser()
        if path.is_absolute():
            policies, reward_models = self._registered(store)
            known = {Path(p).resolve() for p in (*policies, *reward_models)}
            if path.resolve() in known or self._under_models_dir(path):
                return spec
        raise WorkbenchError(f"the app does not load model '{spec}': use {self.places()}")

    def check_reward_model(self, store: Store, ref: str) -> str:
        """`ref` if it names a registered reward model with weights (or a directory under --models-dir)."""
        ref = (ref or "").strip()
        with store.connect() as con:
            found = queries.lookup_reward_model(con, ref) if ref else None
        if found is not None and found.has_weights:
            return ref
        path = Path(ref).expanduser()
        if ref and path.is_absolute() and self._under_models_dir(path):
            return ref
        raise WorkbenchError(f"the app does not load reward model '{ref}': pick one registered in the store "
                             "(`workbench rm register DIR` adds one) or a directory under --models-dir")

    def _registered_policy(self, store: Store, name: str) -> bool:
        """A policy trained here (`workbench dpo train`) and registered under this name."""
        with store.connect() as con:
            return queries.get_policy(con, name) is not None

    def _under_models_dir(self, path: Path) -> bool:
        """Strictly inside --models-dir: the real path (every link followed, as the OS opens it), or the
        path as written when it holds no '..' (a symlink the user put in the models dir counts as
        chosen). '..' is never folded as text: the OS follows a link before it goes up, so
        `<models-dir>/linked/../x` is `x` beside the link's target, wherever that is."""
        if self.models_dir is None:
            return False
        real = Path(os.path.realpath(path))
        if any(real != root and real.is_relative_to(root) for root in self._roots):
            return True
        if ".." in path.parts:
            return False
        return any(path != root and path.is_relative_to(root) for root in self._roots)
