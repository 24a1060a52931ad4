"""`workbench rm eval`: a reward model's pairwise accuracy on labelled pairs (files or the store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.pair_filter import PairFilter
from workbench.reward_models import describe, registered_weights, resolve_reward_model
from workbench.store import Store
from workbench.training import pairs_from_files, pairs_from_store


def evaluate_reward_model(store: Store, rm: str, *, data: Sequence[str] = (), pair_filter: PairFilter | None = None,
                          skip_invalid: bool = False, max_length: int = 1024, progress: bool = True,
                          fmt: str = "auto") -> dict:
    """n, accuracy (ties half), mean_margin, length_baseline (longer reply wins), shorter_baseline."""
    from engine.evaluation import evaluate_pairs
    from engine.progress import progress_bar
    from engine.scoring import load_scorer

    if bool(data) == bool(pair_filter):
        raise WorkbenchError("give the pairs with --data FILE... or --from-store (not both)")
    label, model_path = model_for_eval(store, rm)
    pairs = pairs_from_files(data, fmt=fmt, skip_invalid=skip_invalid, progress=progress) if data else \
        pairs_from_store(store, pair_filter)
    scorer = load_scorer(model_path, max_length=max_length)
    with progress_bar(2 * len(pairs), f"evaluating {label} on {len(pairs)} pairs", unit=" conv",
                      enabled=progress) as bar:
        result = evaluate_pairs(scorer, pairs, progress=lambda done, total: bar.update(done - bar.n))
    return {"rm": label, **{k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")}}


def model_for_eval(store: Store, rm: str) -> tuple[str, str]:
    """(label, weights path) of the reward model to evaluate: a directory, or one from the store."""
    path = Path(rm)
    if path.is_dir():
        return str(path), str(path)
    model = resolve_reward_model(store, rm)
    if not model["path"]:
        raise WorkbenchError(f"{describe(model)} has no weights here (its scores were imported)")
    return describe(model), registered_weights(model)


def evaluate_rewardbench(store: Store, rm: str, data: Sequence[str], *, skip_invalid: bool = False,
                         max_length: int = 1024, scorer=None, progress: bool = True) -> dict:
    """RewardBench-style accuracy per subset, section and overall (see `workbench.rewardbench`)."""
    from engine.progress import progress_bar
    from engine.scoring import load_scorer
    from workbench.rewardbench import read_rewardbench, rewardbench_report, score_rows

    if not data:
        raise WorkbenchError("--format rewardbench needs the rows with --data FILE")
    label, model_path = model_for_eval(store, rm) if scorer is None else (rm, None)
    rows, skipped = read_rewardbench(data, skip_invalid=skip_invalid)
    scorer = scorer or load_scorer(model_path, max_length=max_length)
    replies = sum(1 + len(row.rejected) for row in rows)
    with progress_bar(replies, f"evaluating {label} on {len(rows)} rewardbench rows", unit=" conv",
                      enabled=progress) as bar:
        outcomes = score_rows(scorer, rows, progress=lambda done, total: bar.update(done - bar.n))
    return {"rm": label, "format": "rewardbench", "skipped": skipped, **rewardbench_report(rows, outcomes)}
