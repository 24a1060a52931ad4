"""Why pairs are in or out: the filter waterfall every export records, `workbench explain PAIR_ID`
(with what human reviewers said about the pair's replies), and the length-bias report and gate of an export.

The waterfall applies the filter's steps in a fixed order (non-finite scores, then each field that is
set, in `PairFilter`'s order, then duplicate texts, then the limit), so each step's "removed" counts
the pairs that survived every earlier step and failed this one; the counts add up to the store's pairs.

Length bias: Cohen's d of chosen vs rejected reply length in characters (pooled standard deviation;
positive: chosen replies longer) and the share of pairs of unequal length whose chosen reply is the
longer. `max_length_bias` refuses an export whose |d| is above it, naming the length ratio that would
bring it under (measured on the same selection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import NotFound, WorkbenchError
from workbench.curate.pair_filter import PairFilter, option_name
from workbench.store import Store, queries

if TYPE_CHECKING:
    from workbench.curate.curation import PairIndex

_LABELS = {"finite_scores": "non-finite scores (refused since; an old store may hold them)",
           "duplicate_texts": "the same prompt, chosen and rejected text as a pair with a larger margin",
           "limit": "beyond --limit"}


def active_fields(pair_filter: PairFilter) -> list[str]:
    """The filter fields that are set and select something, in the order the SQL applies them."""
    values = pair_filter.as_dict()
    return [name for name in queries.FIELD_CONDITIONS if values.get(name) not in (None, False, "")]


def waterfall(con, values: dict, pair_filter: PairFilter, index: PairIndex | None = None) -> dict:
    """How many pairs each step of the selection removed (see the module docstring); counted on the
    app's in-memory `index` when one is given (refreshed from `con` first), else on the store."""
    active = active_fields(pair_filter)
    if index is None:
        result = queries.filter_waterfall(con, values, active)
    else:
        index.refresh(con)
        result = index.waterfall(values, active)
    selected = result["selected"]
    kept = selected if pair_filter.limit is None else min(selected, pair_filter.limit)
    steps = result["steps"] + [{"step": "limit", "removed": selected - kept, "remaining": kept}]
    for step in steps:
        step["why"] = _LABELS.get(step["step"]) or f"{option_name(step['step'])} ({pair_filter.as_dict()[step['step']]})"
    return {"pairs_in_store": result["pairs_in_store"], "steps": steps, "kept": kept}


def why_dropped(store: Store, pair_filter: PairFilter, index: PairIndex | None = None) -> dict:
    """The waterfall an export with this filter records in its manifest (`why_dropped`), without
    exporting: what the app's Curate tab draws as the filter changes, from its `index` (the same
    numbers without joining the store's tables: 10M replies stay interactive)."""
    from workbench.exports.export import query_values

    values = query_values(store, pair_filter)
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")  # its counts see one state of the store, as the export's do
        result = waterfall(con, values, pair_filter, index)
        con.execute("COMMIT")
    return result


def length_bias(con, values: dict, pair_filter: PairFilter) -> dict:
    """The length report of the pairs an export with this filter writes (see the module docstring)."""
    report = queries.selection_lengths(con, values, pair_filter.limit)
    return {k: _rounded(v) for k, v in report.items() if k != "within_ratio"} | {
        "within_ratio": [{k: _rounded(v) for k, v in row.items()} for row in report["within_ratio"]]}


def _rounded(value):
    return round(value, 4) if isinstance(value, float) else value


def check_length_bias(report: dict, max_length_bias: float) -> None:
    """Refuse a selection whose |Cohen's d| exceeds `max_length_bias`, saying by how much and which
    length ratio (measured on the same pairs) would bring it under."""
    d = report["cohens_d"]
    if d is None or abs(d) <= max_length_bias:
        return
    side = "longer" if d > 0 else "shorter"
    share = report["longer_wins"]
    wins = f"; the chosen reply is the longer in {share:.0%} of pairs of unequal length" if share is not None else ""
    helps = next((row for row in report["within_ratio"]
                  if row["pairs"] and row["cohens_d"] is not None and abs(row["cohens_d"]) <= max_length_bias), None)
    fix = (f"pairs within a length ratio of {helps['ratio']} ({helps['pairs']} of {report['pairs']}) have d = "
           f"{helps['cohens_d']:+.2f}: rebuild pairs with `pairs build --max-length-ratio {helps['ratio']}` "
           "(it counts tokens) or bound lengths with --min-chars/--max-chars"
           if helps else "no length ratio down to 1.25 brings it under; bound lengths with --min-chars/--max-chars "
                         "or build pairs with a tighter --max-length-ratio")
    raise WorkbenchError(f"length bias: chosen replies are {side} (Cohen's d = {d:+.2f}{wins}), "
                         f"{abs(d) - max_length_bias:.2f} above --max-length-bias {max_length_bias}; {fix}")


def explain_pair(store: Store, pair_id: str, pair_filter: PairFilter | None = None) -> dict:
    """One pair: is it in the selection `pair_filter` makes (all pairs by default), and if not, which
    step dropped it; the replies and scores that made it, and the run behind each."""
    from workbench.exports.export import query_values

    pair_filter = pair_filter or PairFilter()
    values = query_values(store, pair_filter)
    with store.connect() as con:
        full_id = _resolve(con, pair_id)
        row = queries.pair_account(con, full_id, values)
        steps = _steps(row, pair_filter)
        dropped = next((s for s in steps if not s["passes"]), None)
        winner = None if dropped else queries.text_group_winner(con, row, values)
        if dropped is None and winner != full_id:
            dropped = {"step": "duplicate_texts", "why": _LABELS["duplicate_texts"] + f" (pair {winner})"}
        verdict = "in" if dropped is None else "out"
        return {
            "pair_id": full_id, "verdict": verdict, "dropped_by": dropped, "filter": pair_filter.describe(),
            "checks": steps, "note": _limit_note(pair_filter, verdict),
            "pair": {k: row[k] for k in ("prompt_id", "chosen_id", "rejected_id", "label_source", "labeler",
                                         "strategy", "score_chosen", "score_rejected", "margin", "source", "tags",
                                         "flagged", "contaminated")},
            "pair_run": queries.run_brief(con, row["run_id"]),
            "replies": queries.response_lineage(con, [row["chosen_id"], row["rejected_id"]]),
            "contamination": queries.contamination_of(con, row["prompt_id"], [row["chosen_id"], row["rejected_id"]]),
            "human_votes": _human_votes(con, row),
        }


def _human_votes(con, row: dict) -> list[dict]:
    """What people said about the pair's two replies in review (`workbench review`): for each vote,
    'chosen' or 'rejected' (the reply they preferred, in this pair's terms), 'tie' or 'both-bad'."""
    votes = queries.votes_on_replies(con, row["prompt_id"], row["chosen_id"], row["rejected_id"])
    side = {row["chosen_id"]: "chosen", row["rejected_id"]: "rejected"}
    return [v | {"vote": side.get(v["vote"], v["vote"])} for v in votes]


def _resolve(con, pair_id: str) -> str:
    found = queries.matching_pair_ids(con, pair_id.strip())
    if not found:
        raise NotFound(f"no pair id starts with '{pair_id}' (`workbench export --with-provenance` writes pair ids)")
    if len(found) > 1:
        raise WorkbenchError(f"'{pair_id}' starts more than one pair id ({', '.join(f[:12] for f in found)}...): "
                             "give more characters")
    return found[0]


def _steps(row: dict, pair_filter: PairFilter) -> list[dict]:
    values = pair_filter.as_dict()
    steps = [{"step": "finite_scores", "passes": bool(row["pass_finite_scores"]), "why": _LABELS["finite_scores"]}]
    for name in active_fields(pair_filter):
        steps.append({"step": name, "passes": bool(row[f"pass_{name}"]),
                      "why": f"{option_name(name)} {values[name]}: {_pair_value(row, name)}"})
    return steps


def _pair_value(row: dict, name: str) -> str:
    """What the pair has for the field a step checks."""
    shown = {"source": row["source"], "min_margin": f"margin {row['margin']}", "label": row["label_source"],
             "rm": f"labelled by {row['labeler']}", "strategy": row["strategy"], "tag": f"tags {row['tags']}",
             "min_score": f"scores {row['score_chosen']} / {row['score_rejected']}",
             "max_score": f"scores {row['score_chosen']} / {row['score_rejected']}",
             "min_chars": f"lengths {row['chosen_chars']} / {row['rejected_chars']} chars",
             "max_chars": f"lengths {row['chosen_chars']} / {row['rejected_chars']} chars",
             "exclude_flagged": "flagged" if row["flagged"] else "not flagged",
             "exclude_contaminated": "matches a benchmark" if row["contaminated"] else "no benchmark match",
             "generation_run": f"replies from runs {row['chosen_run']} / {row['rejected_run']}"}
    return f"the pair has {shown[name]}"


def _limit_note(pair_filter: PairFilter, verdict: str) -> str | None:
    if pair_filter.limit is not None and verdict == "in":
        return f"--limit {pair_filter.limit} keeps the first pairs in pair-id order; this account ignores it"
    return None
