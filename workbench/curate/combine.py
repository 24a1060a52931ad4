"""`workbench pairs build --rm A --rm B --combine mean-z|agree`: pairs from several reward models.

Over the selected responses (`--source`, `--generation-run`) that every listed model has scored,
each model's scores are standardised (z = (score - mean) / population std) and averaged: the
*mean-z* score. Either rule then runs the chosen strategy on that score, with the single-model
tie rules (`workbench.curate.pairs`):

- `mean-z`: the strategy's pairs, `--min-margin` applying to the mean-z margin (in standard deviations).
- `agree`: of the strategy's pairs, only those that every model orders the same way, each by at
  least its own `--min-margin` in its own units (one value for all models, or one per `--rm`, in
  order). For best-vs-random the draw comes first, then the agreement check.

Labelling: the combination is a labeler of its own in the `reward_models` table, named after the
rule and its members' names (`mean-z(A,B)`, members sorted; a new member version makes a new
version of the labeler), with no weights and its members and rule in its config. Every pair
records it as its reward model; its `params` name the rule and each member (id, name, version,
margin). `export --rm 'mean-z(A,B)'` (or `@VERSION`) selects these pairs, and the manifest lists
the members; `export --rm A` keeps meaning "pairs A labelled on its own".
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench import ids
from workbench.errors import WorkbenchError
from workbench.curate.pairs import PairBuildResult, ensure_token_counts, strategy_params
from workbench.models.registered_model import RegisteredModel
from workbench.models.reward_models import resolve_reward_model
from workbench.store.runs import record_completed_run
from workbench.store import Store, queries
from workbench.store import combined_pairs as sql

RULES = ("mean-z", "agree")


@dataclass
class CombinedPairBuildResult(PairBuildResult):
    combine: str = ""
    members: list | None = None
    before_agreement: int | None = None  # agree: pairs the strategy found before the agreement check


def _margins(rule: str, min_margins: list[float], n_models: int) -> tuple[float, list[float]]:
    """(margin on the mean-z score, per-model margins) from the --min-margin values given."""
    if any(m < 0 for m in min_margins):
        raise WorkbenchError("--min-margin must be >= 0")
    if rule == "mean-z":
        if len(min_margins) > 1:
            raise WorkbenchError("mean-z takes one --min-margin (on the averaged z-score)")
        return (min_margins[0] if min_margins else 0.0), []
    if len(min_margins) not in (0, 1, n_models):
        raise WorkbenchError(f"agree takes one --min-margin for every model or one per --rm ({n_models}), "
                             f"not {len(min_margins)}")
    return 0.0, list(min_margins) * n_models if len(min_margins) == 1 else list(min_margins) or [0.0] * n_models


def _by_name(models: list[RegisteredModel]) -> list[RegisteredModel]:
    """Members in one order (name, version), so the same models given in another order are the same labeler."""
    return sorted(models, key=lambda m: (m.name, m.version))


def combined_labeler(store: Store, models: list[RegisteredModel], rule: str) -> RegisteredModel:
    """The labeler for this rule over these models (registered once; idempotent)."""
    members = _by_name(models)
    names = [m.name for m in members]
    labels = names if len(set(names)) == len(names) else [m.label for m in members]
    rm_id = ids.digest("combined", rule, *(m.rm_id for m in members))
    config = {"combine": rule, "members": [m.as_reference() for m in members]}

    def write(con) -> RegisteredModel:
        if queries.get_reward_model(con, rm_id) is None:
            queries.insert_reward_model(con, rm_id, f"{rule}({','.join(labels)})", None, config, None)
        return queries.get_reward_model(con, rm_id)

    return store.write(write)


def build_combined_pairs(store: Store, rms: list[str], rule: str, strategy: str, *, k: int | None = None,
                         min_margins: list[float] = (), max_length_ratio: float | None = None, seed: int = 0,
                         source: str | None = None, generation_run: str | None = None,
                         progress: bool = True) -> CombinedPairBuildResult:
    """Build pairs from several reward models' scores by `rule` (see the module docstring)."""
    if rule not in RULES:
        raise WorkbenchError(f"unknown --combine rule '{rule}'; choose one of {', '.join(RULES)}")
    models = [resolve_reward_model(store, rm) for rm in rms]
    if len(models) < 2 or len({m.rm_id for m in models}) != len(models):
        raise WorkbenchError("--combine needs at least two different reward models (--rm A --rm B)")
    for m in models:
        if m.combination:
            raise WorkbenchError(f"{m.label} is itself a combination; list its members instead")
    combined_margin, member_margins = _margins(rule, list(min_margins), len(models))
    params = strategy_params(strategy, k, combined_margin, max_length_ratio, seed, source, generation_run)
    _check_spread(store, models, source, generation_run)  # before anything is written
    labeler = combined_labeler(store, models, rule)
    params["combine"] = rule
    # sorted, so the same models in another order make the same pairs (both rules are symmetric)
    margin_of = dict(zip((m.rm_id for m in models), member_margins))
    params["members"] = [m.as_reference() | ({"min_margin": float(margin_of[m.rm_id])} if rule == "agree" else {})
                         for m in _by_name(models)]
    spec = ids.canonical_json(params)
    run_id = ids.run_id("pairs", {"rm_id": labeler.rm_id, **params})
    member_ids = [m.rm_id for m in models]
    if max_length_ratio is not None:
        ensure_token_counts(store, member_ids[0], source, generation_run, progress)

    import pyarrow as pa  # here: the CLI reads RULES without loading pyarrow (it starts at once)

    margins = None if rule == "mean-z" else pa.table({"rm_id": pa.array(member_ids, pa.string()),
                                                      "min_margin": pa.array(member_margins, pa.float64())})
    result = CombinedPairBuildResult(run_id, labeler.label, strategy, params, 0, 0, rule,
                                     [m.label for m in models])
    config = {"rm": labeler.as_reference(), **params}

    def write(con) -> None:
        sql.stage_combined_scores(con, member_ids, labeler.rm_id, source, generation_run)
        found, result.candidates, result.new_pairs = sql.insert_combined_pairs(
            con, strategy, {"rm_id": labeler.rm_id, **params}, margins, spec=spec, run_id=run_id)
        result.before_agreement = found if rule == "agree" else None
        summary = {"candidates": result.candidates, "new_pairs": result.new_pairs, "before_agreement": found}
        record_completed_run(con, run_id, "pairs", config, summary)

    store.write(write)
    return result


def _check_spread(store: Store, models: list[RegisteredModel], source: str | None, run: str | None) -> None:
    """Refuse when no response has every model's score, or a model cannot be standardised."""
    with store.connect() as con:
        spread = {row["rm_id"]: row for row in sql.member_spread(con, [m.rm_id for m in models], source, run)}
    if not spread:
        raise WorkbenchError(f"no selected response is scored by all of {', '.join(m.label for m in models)}: "
                             "score them with each model first (`workbench score --rm NAME`)")
    for m in models:
        if not spread[m.rm_id]["std"]:
            raise WorkbenchError(f"{m.label} gives every selected response the same score; "
                                 "its scores cannot be standardised")
