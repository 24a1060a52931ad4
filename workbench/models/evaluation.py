"""`workbench rm eval`: a reward model's pairwise accuracy on labelled pairs (files or the store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.models.eval_sets import evaluation_set
from workbench.curate.pair_filter import PairFilter
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store


def evaluate_reward_model(store: Store, rm: str, *, data: Sequence[str] = (), pair_filter: PairFilter | None = None,
                          skip_invalid: bool = False, max_length: int = 1024, progress: bool = True,
                          fmt: str = "auto", precision: str = "auto", trust_remote_code: bool = False,
                          compared_with: Sequence[str] = ()) -> dict:
    """n, accuracy (ties half), mean_margin, length_baseline (longer reply wins), shorter_baseline.

    `precision` as for `workbench score` (fp32 makes the scores comparable with a plain fp32 loop).
    Pairs that `rm` or a model in `compared_with` labelled are left out (`workbench.models.eval_sets`):
    the result says how many and by whom; with nothing left the evaluation is refused.
    """
    from engine.evaluation import evaluate_pairs
    from engine.progress import progress_bar

    # the model first: changed or missing weights are the refusal to see, whatever the pairs
    label, scorer = scorer_for_eval(store, rm, max_length=max_length, precision=precision,
                                    trust_remote_code=trust_remote_code)
    chosen_set = evaluation_set(store, [rm, *compared_with], data=data, pair_filter=pair_filter, fmt=fmt,
                                skip_invalid=skip_invalid, progress=progress)
    pairs = chosen_set.pairs
    with progress_bar(2 * len(pairs), f"evaluating {label} on {len(pairs)} pairs", unit=" conv",
                      enabled=progress) as bar:
        result = evaluate_pairs(scorer, pairs, progress=lambda done, total: bar.update(done - bar.n))
    return {"rm": label, "precision": scorer.precision,
            **{k: v for k, v in result.items() if k not in ("chosen_scores", "rejected_scores")},
            **chosen_set.as_dict()}


def scorer_for_eval(store: Store, rm: str, *, max_length: int, precision: str = "auto",
                    trust_remote_code: bool = False):
    """(label, Scorer) of the reward model to evaluate: a directory (evaluated in place, its format
    detected), or one from the store (its recorded format, its weights checked unchanged)."""
    from engine.scoring import load_scorer

    path = Path(rm)
    if path.is_dir():
        return str(path), load_scorer(str(path), max_length=max_length, precision=precision,
                                      trust_remote_code=trust_remote_code)
    model = resolve_reward_model(store, rm, trust_remote_code)
    return model.label, model.load_scorer(max_length=max_length, precision=precision,
                                          trust_remote_code=trust_remote_code)


def evaluate_rewardbench(store: Store, rm: str, data: Sequence[str], *, skip_invalid: bool = False,
                         max_length: int = 1024, scorer=None, precision: str = "auto",
                         trust_remote_code: bool = False, progress: bool = True) -> dict:
    """RewardBench-style accuracy per subset, section and overall (see `workbench.models.rewardbench`).

    `precision` and `trust_remote_code` as for `evaluate_reward_model` (unused with a given `scorer`)."""
    from engine.progress import progress_bar
    from workbench.models.rewardbench import read_rewardbench, rewardbench_report, score_rows

    if not data:
        raise WorkbenchError("--format rewardbench needs the rows with --data FILE")
    if scorer is None:
        label, scorer = scorer_for_eval(store, rm, max_length=max_length, precision=precision,
                                        trust_remote_code=trust_remote_code)
        resolved = {"precision": scorer.precision}
    else:
        label, resolved = rm, {}
    rows, skipped = read_rewardbench(data, skip_invalid=skip_invalid)
    replies = sum(1 + len(row.rejected) for row in rows)
    with progress_bar(replies, f"evaluating {label} on {len(rows)} rewardbench rows", unit=" conv",
                      enabled=progress) as bar:
        outcomes = score_rows(scorer, rows, progress=lambda done, total: bar.update(done - bar.n))
    return {"rm": label, "format": "rewardbench", "skipped": skipped, **resolved, **rewardbench_report(rows, outcomes)}
