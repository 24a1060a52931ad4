"""`workbench agreement` and the Review tab's agreement view: how far people agree with each other, and
each reward model and judge with the people.

- Between annotators: each annotator's vote on an item is one of `CATEGORIES` (the first reply of the
  item in id order, the second, tie, both bad; skips are no votes). For two annotators Cohen's kappa
  (`sklearn.metrics.cohen_kappa_score`) on the items both labelled; for more, Krippendorff's alpha
  (nominal, the `krippendorff` package) over every item, with each pair's kappa beside it.
- Against the human majority: an item's majority is the vote more than half its annotators gave. On the
  items whose majority prefers a reply, a labeler is right when it scored that reply higher (an equal
  score counts as wrong): accuracy with a 95% Wilson interval, overall and per queue source. Only the
  random-audit source's figure estimates the labeler's error rate without bias.
- Judge position consistency, where judges recorded it; the disputed items (annotators disagree).
  "first" and "second" name an item's replies in response-id order, the same for every annotator.
"""

from __future__ import annotations

import math
from itertools import combinations

from workbench.review.queue import UNBIASED_NOTE
from workbench.store import Store, queries

CATEGORIES = ("first", "second", "tie", "both-bad")
Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (well behaved at 0, 1 and small n)."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def vote_category(vote: str, first_id: str, second_id: str) -> str:
    return "first" if vote == first_id else "second" if vote == second_id else vote


def _items(votes: list[dict]) -> dict[str, dict]:
    items: dict[str, dict] = {}
    for v in votes:
        item = items.setdefault(v["item_id"], {k: v[k] for k in ("item_id", "queue", "source", "prompt_id", "prompt",
                                                                   "first_id", "second_id")} | {"votes": {}})
        item["votes"][v["annotator"]] = vote_category(v["vote"], v["first_id"], v["second_id"])
    return items


def pairwise_kappas(items: dict[str, dict], annotators: list[str]) -> list[dict]:
    """Cohen's kappa of each pair of annotators on the items both labelled (None where undefined)."""
    from sklearn.metrics import cohen_kappa_score

    rows = []
    for a, b in combinations(annotators, 2):
        both = [i for i in items.values() if a in i["votes"] and b in i["votes"]]
        ya, yb = [i["votes"][a] for i in both], [i["votes"][b] for i in both]
        kappa = None
        if both and len(set(ya) | set(yb)) > 1:  # one category throughout: kappa is 0/0
            kappa = float(cohen_kappa_score(ya, yb, labels=list(CATEGORIES)))
        observed = sum(x == y for x, y in zip(ya, yb)) / len(both) if both else None
        rows.append({"annotators": [a, b], "items": len(both), "cohen_kappa": kappa, "observed_agreement": observed})
    return rows


def krippendorff_alpha(items: dict[str, dict], annotators: list[str]) -> float | None:
    """Nominal Krippendorff's alpha over annotators x items (missing votes as NaN); None where undefined."""
    import krippendorff
    import numpy as np

    code = {c: float(k) for k, c in enumerate(CATEGORIES)}
    matrix = np.full((len(annotators), len(items)), np.nan)
    for column, item in enumerate(items.values()):
        for row, name in enumerate(annotators):
            if name in item["votes"]:
                matrix[row, column] = code[item["votes"][name]]
    if len(set(matrix[~np.isnan(matrix)].tolist())) < 2:
        return None
    value = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal",
                               value_domain=list(code.values()))
    return None if math.isnan(value) else float(value)


def majority(votes: dict[str, str]) -> str | None:
    """The vote more than half the annotators gave, or None."""
    for category in set(votes.values()):
        if 2 * list(votes.values()).count(category) > len(votes):
            return category
    return None


def labeler_accuracy(items: dict[str, dict], scores: list[tuple]) -> list[dict]:
    """Each labeler against the human majority: overall and per queue source."""
    tallies: dict[tuple[str, str, str], list[int]] = {}
    for item_id, labeler, kind, first, second in scores:
        item = items.get(item_id)
        verdict = majority(item["votes"]) if item else None
        if verdict not in ("first", "second"):
            continue
        right = (first > second) if verdict == "first" else (second > first)
        kind = "judge" if kind == "judge" else "reward model"
        for source in ("all", item["source"]):
            tally = tallies.setdefault((labeler, kind, source), [0, 0])
            tally[0] += int(right)
            tally[1] += 1
    rows = []
    for (labeler, kind, source), (correct, n) in sorted(tallies.items()):
        low, high = wilson_interval(correct, n)
        rows.append({"labeler": labeler, "kind": kind, "source": source, "pairs": n, "correct": correct,
                     "accuracy": correct / n, "ci95": [low, high]})
    return rows


def agreement_report(store: Store, queue: str | None = None) -> dict:
    """Everything `workbench agreement` prints (see the module docstring)."""
    with store.connect() as con:
        votes = queries.review_votes(con, queue)
        scores = queries.labeler_scores_on_items(con, queue)
        positions = queries.judge_position_consistency(con) if queries.has_judge_positions(con) else None
    items = _items(votes)
    annotators = sorted({v["annotator"] for v in votes})
    pairs = pairwise_kappas(items, annotators)
    between = {"annotators": annotators, "items": len(items), "votes": len(votes), "pairwise": pairs}
    if len(annotators) == 2:
        between |= {"method": "cohen_kappa", "value": pairs[0]["cohen_kappa"]}
    elif len(annotators) > 2:
        between |= {"method": "krippendorff_alpha", "value": krippendorff_alpha(items, annotators)}
    else:
        between |= {"method": None, "value": None}
    disputed = [{"item_id": i["item_id"], "queue": i["queue"], "source": i["source"], "prompt_id": i["prompt_id"],
                 "prompt": i["prompt"], "first_id": i["first_id"], "second_id": i["second_id"],
                 "votes": dict(sorted(i["votes"].items())), "majority": majority(i["votes"])}
                for i in items.values() if len(set(i["votes"].values())) > 1]
    return {"queue": queue, "between_annotators": between, "labelers": labeler_accuracy(items, scores),
            "judge_position_consistency": positions, "disputed": disputed, "note": UNBIASED_NOTE}
