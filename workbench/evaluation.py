"""`workbench rm eval`: a reward model's pairwise accuracy on labelled pairs (files or the store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.export import ExportSpec
from workbench.reward_models import describe, registered_weights, resolve_reward_model
from workbench.scoring import load_scorer
from workbench.store import Store
from workbench.training import pairs_from_files, pairs_from_store


def evaluate_reward_model(store: Store, rm: str, *, data: Sequence[str] = (), spec: ExportSpec | None = None,
                          skip_invalid: bool = False, max_length: int = 1024, progress: bool = True) -> dict:
    """n, accuracy (ties half), mean_margin, length_baseline (longer reply wins), shorter_baseline."""
    from engine.evaluation import evaluate_pairs

    if bool(data) == bool(spec):
        raise WorkbenchError("give the pairs with --data FILE... or --from-store (not both)")
    path = Path(rm)
    if path.is_dir():
        label, model_path = str(path), str(path)
    else:
        model = resolve_reward_model(store, rm)
        if not model["path"]:
            raise WorkbenchError(f"{describe(model)} has no weights here (its scores were imported)")
        label, model_path = describe(model), registered_weights(model)
    pairs = pairs_from_files(data, skip_invalid=skip_invalid, progress=progress) if data else \
        pairs_from_store(store, spec)
    result = evaluate_pairs(load_scorer(model_path, max_length=max_length), pairs)
    return {"rm": label, **{k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")}}
