"""`workbench rm eval`: a reward model's pairwise accuracy on labelled pairs (files or the store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.export import ExportSpec
from workbench.reward_models import describe, load_registered_scorer, resolve_reward_model
from workbench.scoring import load_scorer
from workbench.store import Store
from workbench.training import pairs_from_files, pairs_from_store


def evaluate_reward_model(store: Store, rm: str, *, data: Sequence[str] = (), spec: ExportSpec | None = None,
                          skip_invalid: bool = False, max_length: int = 1024, progress: bool = True,
                          precision: str = "auto", trust_remote_code: bool = False) -> dict:
    """n, accuracy (ties half), mean_margin, length_baseline (longer reply wins), shorter_baseline.

    `precision` as for `workbench score` (fp32 makes the scores comparable with a plain fp32 loop).
    """
    from engine.evaluation import evaluate_pairs

    if bool(data) == bool(spec):
        raise WorkbenchError("give the pairs with --data FILE... or --from-store (not both)")
    path = Path(rm)
    if path.is_dir():  # evaluated in place, not registered: its format is detected
        label = str(path)
        scorer = load_scorer(str(path), max_length=max_length, precision=precision, trust_remote_code=trust_remote_code)
    else:
        model = resolve_reward_model(store, rm)
        label = describe(model)
        scorer = load_registered_scorer(model, max_length=max_length, precision=precision,
                                        trust_remote_code=trust_remote_code)
    pairs = pairs_from_files(data, skip_invalid=skip_invalid, progress=progress) if data else \
        pairs_from_store(store, spec)
    result = evaluate_pairs(scorer, pairs)
    return {"rm": label, "precision": scorer.precision,
            **{k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")}}
