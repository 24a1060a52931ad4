"""`workbench pairs build --rm A --labels human-first`: the reward model's pairs with human verdicts first.

The strategy runs on A's scores as `pairs build --rm A` does; then, for each pair whose two replies
have a human verdict (the vote more than half their annotators gave, `workbench review`): a verdict
for the chosen reply keeps the pair, one for the rejected reply flips it, and "tie" or "both bad"
drops it. Pairs without a verdict stay as A ordered them.

Labelling: the result is a labeler of its own, `human-first(A)`, registered like a combination (no
weights; its config names A). Its identity includes every human verdict in the store, so new labels
make a new version rather than mixing old and new orders under one name; `export --rm human-first(A)`
takes the newest. Each pair records who decided it: `label_source` 'human' (a verdict kept or flipped
it) or 'rm' (no verdict), which `export --label human` / `rm train --from-store --label human` select
and the export manifest counts (`decided_by`). A flipped pair keeps each reply's own score, so its
margin is negative.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench import ids
from workbench.curate.pairs import PairBuildResult, ensure_token_counts, strategy_params
from workbench.errors import WorkbenchError
from workbench.models.registered_model import RegisteredModel
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store, queries
from workbench.store import human_first_pairs as sql
from workbench.store.runs import record_completed_run

LABEL_RULES = ("rm", "human-first")
HUMAN_FIRST = "human-first"


@dataclass
class HumanFirstPairBuildResult(PairBuildResult):
    confirmed: int = 0   # pairs a human verdict agreed with
    flipped: int = 0     # pairs a human verdict reversed
    dropped: int = 0     # pairs a "tie" or "both bad" verdict removed
    verdicts: int = 0    # human verdicts in the store


def human_first_labeler(store: Store, model: RegisteredModel) -> tuple[RegisteredModel, int]:
    """The human-first labeler over this model and the store's current verdicts (registered once), and
    how many verdicts there are."""
    if model.kind == HUMAN_FIRST:
        raise WorkbenchError(f"{model.label} already puts human labels first; give its reward model instead")

    def write(con) -> tuple[RegisteredModel, int]:
        verdicts = sql.human_verdict_rows(con)
        rm_id = ids.digest("human-first", model.rm_id, ids.canonical_json([list(v) for v in verdicts]))
        if queries.get_reward_model(con, rm_id) is None:
            config = {"kind": HUMAN_FIRST, "members": [model.as_reference()], "human_verdicts": len(verdicts)}
            queries.insert_reward_model(con, rm_id, f"{HUMAN_FIRST}({model.name})", None, config, None)
        return queries.get_reward_model(con, rm_id), len(verdicts)

    return store.write(write)


def build_human_first_pairs(store: Store, rm: str, strategy: str, *, k: int | None = None, min_margin: float = 0.0,
                            max_length_ratio: float | None = None, seed: int = 0, source: str | None = None,
                            generation_run: str | None = None, progress: bool = True) -> HumanFirstPairBuildResult:
    """Pairs of `rm` by the strategy, human verdicts applied (see the module docstring)."""
    params = strategy_params(strategy, k, min_margin, max_length_ratio, seed, source, generation_run)
    model = resolve_reward_model(store, rm)
    if max_length_ratio is not None:
        ensure_token_counts(store, model.rm_id, source, generation_run, progress)
    labeler, verdicts = human_first_labeler(store, model)
    params["labels"] = HUMAN_FIRST
    params["members"] = [model.as_reference()]
    spec = ids.canonical_json(params)
    run_id = ids.run_id("pairs", {"rm_id": labeler.rm_id, **params})
    result = HumanFirstPairBuildResult(run_id, labeler.label, strategy, params, 0, 0, verdicts=verdicts)
    config = {"rm": labeler.as_reference(), **params}

    def write(con) -> None:
        counts = sql.insert_human_first_pairs(con, strategy, {"rm_id": model.rm_id, **params}, labeler.rm_id,
                                              spec=spec, run_id=run_id)
        result.candidates, result.new_pairs = counts["kept"], counts["new"]
        result.confirmed, result.flipped, result.dropped = counts["confirmed"], counts["flipped"], counts["dropped"]
        record_completed_run(con, run_id, "pairs", config, counts | {"verdicts": verdicts})

    store.write(write)
    return result
