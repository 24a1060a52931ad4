"""`RegisteredModel`: one row of the `reward_models` table, as a type with the operations callers need.

Every labeler the store knows is one of these: a reward model with weights on disk (`rm train`,
`rm register`), a scorer whose scores were imported (`import --score-name`), or a combination of
reward models (`pairs build --combine`). The store builds it once, from its row
(`queries.get_reward_model`, `lookup_reward_model`, `find_reward_models`, `list_reward_models`),
with the JSON config already parsed; callers never read the row's columns by name.

    model = resolve_reward_model(store, "hh@2")      # workbench.models.reward_models: name, name@version, id or dir
    model.label                                      # "hh@2", for messages and results
    model.as_reference()                             # {"rm_id", "name", "version"}: what runs record
    scorer = model.load_scorer(max_length=1024, precision="auto")  # refused if it has no weights or they changed

`kind` says which labeler it is. A new kind (an LLM judge, a remote endpoint, a policy) records
`"kind": "<name>"` in the config it registers with, gets a reason in `_NO_WEIGHTS` if it has no
local weights, and the rest (labels, references, listings, manifests) works unchanged.
Nothing here imports torch at module level: the engine is imported when a scorer is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError

WEIGHTS, IMPORTED, COMBINED, ENDPOINT = "weights", "imported", "combined", "endpoint"
JUDGE = "judge"  # an LLM judge (`workbench judge`, workbench.judges): config names its template and model
# why a model without local weights cannot score here, by kind
_NO_WEIGHTS = {IMPORTED: "its scores were imported", COMBINED: "it combines other reward models' scores",
               ENDPOINT: "it scores over HTTP: `workbench score --endpoint URL`",
               JUDGE: "it is an LLM judge: its scores come from `workbench judge pairs|all-pairs|rubric`"}


@dataclass(frozen=True)
class RegisteredModel:
    """A registered labeler: reward model with weights, imported scorer or combination (see `kind`)."""

    rm_id: str
    name: str
    version: int
    path: str | None = None  # the weights directory, as registered; None for labelers without weights
    config: dict = field(default_factory=dict, compare=False, hash=False)  # parsed JSON, as registered
    run_id: str | None = None  # the run that registered it (rm train, import), if any
    created_at: dt.datetime | None = field(default=None, compare=False)

    @classmethod
    def from_row(cls, row: dict) -> RegisteredModel:
        """From a `reward_models` row (DuckDB hands the JSON config back as text)."""
        config = row.get("config") or {}
        return cls(rm_id=row["rm_id"], name=row["name"], version=row["version"], path=row.get("path") or None,
                   config=json.loads(config) if isinstance(config, str) else dict(config),
                   run_id=row.get("run_id"), created_at=row.get("created_at"))

    @property
    def label(self) -> str:
        """NAME@VERSION: how messages, results and the app name it."""
        return f"{self.name}@{self.version}"

    @property
    def kind(self) -> str:
        """weights | imported | combined | endpoint (a kind recorded in the config wins: new labelers name theirs)."""
        if self.config.get("kind"):
            return self.config["kind"]
        if self.path:
            return WEIGHTS
        if "endpoint" in self.config:  # a server scoring over HTTP (`workbench.endpoints.scoring`)
            return ENDPOINT
        return COMBINED if "combine" in self.config else IMPORTED

    @property
    def has_weights(self) -> bool:
        """Whether it can score here: it has a weights directory registered."""
        return bool(self.path)

    @property
    def combination(self) -> dict | None:
        """{"combine": rule, "members": [...]} for a combination of reward models, else None."""
        return self.config if "combine" in self.config else None

    def as_reference(self) -> dict:
        """{"rm_id", "name", "version"}: how run configs, summaries and combinations name it."""
        return {"rm_id": self.rm_id, "name": self.name, "version": self.version}

    def require_weights(self) -> str:
        """The weights directory, or a WorkbenchError saying why this labeler has none here."""
        if not self.has_weights:
            reason = _NO_WEIGHTS.get(self.kind, f"it is a {self.kind} labeler")
            raise WorkbenchError(f"reward model {self.label} has no weights here ({reason})")
        return self.path

    def verified_weights(self) -> str:
        """The weights directory, refused if the weights are no longer the ones registered: the
        fingerprint recorded in its config (its remote code included), or, for rows registered
        before fingerprints were kept, the rm id (the fingerprint's head). Cheap: the fingerprint
        is cached (in the workbench's cache) and reused while their sizes and mtimes are unchanged."""
        from engine.backbone import model_fingerprint

        path = Path(self.require_weights())
        if not (path / "config.json").is_file():
            raise WorkbenchError(f"the weights of {self.label} are gone from {path}: restore them, or register "
                                 "the model's new location with `workbench rm register DIR`")
        recorded = self.config.get("fingerprint") or self.rm_id  # a label-index model's id is not the fingerprint
        if model_fingerprint(path)[:len(recorded)] != recorded:
            raise WorkbenchError(f"the weights in {path} changed since {self.label} was registered: register "
                                 f"them as a new version with `workbench rm register {path} --name {self.name}`")
        return str(path)

    def reward_format(self, trust_remote_code: bool = False):
        """The `engine.rm_formats.RewardFormat` it was recorded with.

        Rows registered before formats were recorded: `rm train`'s (they name a reward token) are
        workbench models; any other is detected from its directory now."""
        from engine.rm_formats import POOLING, RewardFormat, inspect_reward_model

        if "reward_format" in self.config:
            return RewardFormat.from_dict(self.config["reward_format"])
        if self.config.get("reward_token_id") is not None or not self.path:
            return RewardFormat("workbench", POOLING["workbench"], reward_token_id=self.config.get("reward_token_id"))
        return inspect_reward_model(self.path, trust_remote_code=trust_remote_code)

    def scorer_loader(self, *, max_length: int, precision: str, trust_remote_code: bool = False,
                      device: str = "auto") -> Callable[[], object]:
        """Check now (weights present and unchanged, format known); load the Scorer when called.

        Scores go under this rm id only if they come from its weights, read as registered (format, label)."""
        from functools import partial

        from engine.scoring import load_scorer

        weights = self.verified_weights()
        return partial(load_scorer, weights, max_length=max_length, precision=precision, device=device,
                       spec=self.reward_format(trust_remote_code), trust_remote_code=trust_remote_code)

    def load_scorer(self, *, max_length: int, precision: str, trust_remote_code: bool = False,
                    device: str = "auto"):
        """An `engine.scoring.Scorer` for it, after the checks of `scorer_loader`."""
        return self.scorer_loader(max_length=max_length, precision=precision, trust_remote_code=trust_remote_code,
                                  device=device)()

    def format_fields(self) -> dict:
        """format, pooling and label_index, for listings and manifests (the kind as format without weights)."""
        if not self.has_weights:
            return {"format": self.kind, "pooling": None, "label_index": None}
        from engine.errors import EngineError

        try:
            spec = self.reward_format()
        except EngineError:  # an old row whose directory cannot be read as any format (or needs remote code)
            return {"format": "unknown", "pooling": None, "label_index": None}
        return {"format": spec.format, "pooling": spec.pooling, "label_index": spec.label_index}

    def as_manifest(self) -> dict:
        """What an export's manifest records of a labeler: name, version, id, path, format, and the
        rule and members of a combination."""
        entry = {"name": self.name, "version": self.version, "rm_id": self.rm_id, "path": self.path,
                 **self.format_fields()}
        if self.combination:
            entry |= {"combine": self.combination["combine"], "members": self.combination["members"]}
        if self.kind == JUDGE:  # what its verdicts depend on (the template's full text stays in the store)
            entry |= {"judge": {"mode": self.config.get("mode"), "model": self.config.get("judge"),
                                "template_sha256": (self.config.get("template") or {}).get("sha256"),
                                "settings": self.config.get("settings")}}
        return entry
