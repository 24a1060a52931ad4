"""`workbench judge report JUDGE`: what a judge said, how position-consistent it was, and how often it
agrees with the human labels in the store (imported human-labelled pairs, e.g. hh-rlhf).

Accuracy counts an even verdict (P = 0.5, or a tied rating) as half right, as `rm eval` counts ties;
its 95% interval is Wilson's score interval on that count.
"""

from __future__ import annotations

import math

from workbench.errors import WorkbenchError
from workbench.judges.templates import PAIRWISE
from workbench.models.registered_model import JUDGE
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store, queries


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson's 95% score interval of a proportion (None for n = 0)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 4), round(centre + half, 4)


def agreement(n: int, agree: int, ties: int) -> dict:
    """{pairs, agree, ties, accuracy, ci95} with ties counted half."""
    right = agree + ties / 2
    return {"pairs": n, "agree": agree, "ties": ties, "accuracy": round(right / n, 4) if n else None,
            "ci95": wilson_interval(right, n)}


def judge_report(store: Store, ref: str) -> dict:
    """The judge's identity, verdict counts, position consistency (pairwise) and agreement with humans."""
    model = resolve_reward_model(store, ref)
    if model.kind != JUDGE:
        raise WorkbenchError(f"{model.label} is not an LLM judge (it is a {model.kind} labeler): "
                             "grade reward models with `workbench rm eval`")
    config = model.config
    report = {"judge": model.label, "rm_id": model.rm_id, "mode": config["mode"], "model": config["judge"],
              "template": {k: config["template"][k] for k in ("path", "sha256")}, "settings": config["settings"]}
    with store.connect() as con:
        if config["mode"] == PAIRWISE:
            counts = queries.pair_verdict_counts(con, model.rm_id)
            decided = counts["consistent"] + counts["inconsistent"]
            report |= {"verdicts": counts,
                       "position_consistency": round(counts["consistent"] / decided, 4) if decided else None,
                       "human_agreement": agreement(*queries.human_pair_agreement(con, model.rm_id))}
        else:
            report |= {"ratings": queries.rating_counts(con, model.rm_id),
                       "human_agreement": agreement(*queries.human_score_agreement(con, model.rm_id))}
    return report
