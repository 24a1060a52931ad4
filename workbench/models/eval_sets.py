"""Evaluation sets that never grade a reward model on its own labels.

A model trained on pairs another model labelled holds out some of those pairs; graded on them, the
labeling model scores 1.0 by construction (it ordered every one of them), so "old vs new" on such a
set says nothing. Before `rm eval` scores anything, each pair is looked up in the store; a pair that
one of the compared models ordered (it, or a combination it is a member of, labelled the same two
replies of the same prompt, either way round) is dropped from the set, and when nothing is left the
evaluation is refused with the reason and where to find a set that is not circular.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.data import PreferencePair
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.models.registered_model import RegisteredModel
from workbench.store import Store, queries


class CircularEvaluation(WorkbenchError):
    """Every pair of the evaluation set was labelled by a model being evaluated."""


@dataclass
class EvaluationSet:
    """The pairs left to grade on, and what was dropped because a compared model labelled it."""

    pairs: list[PreferencePair]
    excluded: int = 0
    excluded_by: list[str] = field(default_factory=list)  # NAME@VERSION of the compared models that labelled

    def as_dict(self) -> dict:
        return {"excluded_own_labels": self.excluded, "labelled_by_compared": self.excluded_by}


def compared_models(store: Store, refs: Sequence[str]) -> list[RegisteredModel]:
    """The registered rows of the models given as NAME, NAME@VERSION, id or directory; a directory
    the store does not know has labelled nothing here and is left out."""
    found = []
    with store.connect() as con:
        for ref in refs:
            model = queries.lookup_reward_model(con, ref)
            if model is None and Path(ref).is_dir():
                where = str(Path(ref).resolve())
                model = next((m for m in queries.list_reward_models(con)
                              if m.path and str(Path(m.path).resolve()) == where), None)
            if model is not None:
                found.append(model)
    return found


def _same_model(labeler: RegisteredModel, model: RegisteredModel) -> bool:
    if labeler.rm_id == model.rm_id:
        return True
    if labeler.path and model.path and Path(labeler.path).resolve() == Path(model.path).resolve():
        return True  # the same weights registered twice
    combined = labeler.combination
    return bool(combined) and any(member["rm_id"] == model.rm_id for member in combined["members"])


def exclude_own_labels(store: Store, pairs: list[PreferencePair], models: list[RegisteredModel],
                       where: str) -> EvaluationSet:
    """The pairs none of `models` labelled; refused (`CircularEvaluation`) when that leaves none."""
    if not models or not pairs:
        return EvaluationSet(list(pairs))
    with store.connect() as con:
        labelers = queries.labelers_of_pairs(con, [ids.prompt_id(p.prompt) for p in pairs],
                                             [p.chosen for p in pairs], [p.rejected for p in pairs])
        rows = {rm_id: queries.get_reward_model(con, rm_id)
                for rm_id in set().union(*labelers.values()) - {"human"}} if labelers else {}
        has_human = queries.fetch_value(con, "SELECT count(*) FROM pairs WHERE label_source = 'human'") > 0
    own = {rm_id: [m.label for m in models if _same_model(row, m)] for rm_id, row in rows.items() if row}
    circular = [i for i, found in labelers.items() if any(own.get(rm_id) for rm_id in found)]
    excluded_by = sorted({name for i in circular for rm_id in labelers[i] for name in own.get(rm_id, [])})
    drop = set(circular)
    kept = [p for i, p in enumerate(pairs) if i not in drop]
    if not kept:
        elsewhere = ("human-labelled pairs in the store (`--from-store --label human`, or \"Human-labelled pairs\" "
                     "in the app)" if has_human else "human-labelled pairs (import some, e.g. hh-rlhf)")
        raise CircularEvaluation(
            f"all {len(pairs)} pairs of {where} were labelled by {', '.join(excluded_by)}, a model being evaluated: "
            f"it would score 1.0 on them by construction. Evaluate on pairs no compared model labelled: {elsewhere}, "
            "or a file of your own (--data FILE)")
    return EvaluationSet(kept, len(drop), excluded_by)


def evaluation_set(store: Store, models: Sequence[str], *, data: Sequence[str] = (),
                   pair_filter=None, fmt: str = "auto", skip_invalid: bool = False,
                   progress: bool = False) -> EvaluationSet:
    """The pairs in `data` files or the store's `pair_filter` selection, less those any of `models`
    (NAME, NAME@VERSION, id or directory) labelled; refused when that leaves none."""
    from workbench.models.training import pairs_from_files, pairs_from_store  # training imports torch

    if bool(data) == bool(pair_filter):
        raise WorkbenchError("give the pairs with --data FILE... or --from-store (not both)")
    pairs = pairs_from_files(data, fmt=fmt, skip_invalid=skip_invalid, progress=progress) if data else \
        pairs_from_store(store, pair_filter)
    where = ", ".join(str(d) for d in data) if data else f"the store's selection ({pair_filter.describe()})"
    return exclude_own_labels(store, pairs, compared_models(store, models), where)
