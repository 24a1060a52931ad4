"""Why pairs are in or out of a selection: the filter waterfall of an export and one pair's account.

Both apply the filter's own conditions (`pair_filter.FIELD_CONDITIONS`) one at a time, in the
order of `PAIR_CONDITIONS`, so what they say is what the export query does.
"""

from __future__ import annotations

from workbench.store.queries.export import EXPORT_SELECTED, count_export_pairs
from workbench.store.queries.fetch import fetch_dicts, fetch_value
from workbench.store.queries.pair_index import index_selected_count
from workbench.store.queries.pair_filter import (FIELD_CONDITIONS, FINITE_SCORES, PAIR_COLUMNS, PAIR_FILTER,
                                                 PAIR_JOINS, pair_filter_params)

# Length ratios (longer / shorter reply, in characters) the length-bias report looks within.
LENGTH_RATIOS = (2.0, 1.5, 1.25)
_BASE = f"SELECT {PAIR_COLUMNS}, c.text AS chosen_text, r.text AS rejected_text {PAIR_JOINS}"


def filter_waterfall(con, spec: dict, active: list[str]) -> dict:
    """Pairs in the store, then how many each step removes, in order: non-finite scores, each filter
    field in `active`, duplicate texts (an export keeps one pair per prompt/chosen/rejected text)."""
    return _waterfall(con, f"({_BASE})", spec, active, count_export_pairs(con, spec))


def _waterfall(con, base: str, spec: dict, active: list[str], selected: int) -> dict:
    """The waterfall over `base` (a relation with `PAIR_COLUMNS`), given the selection's size."""
    steps = [("finite_scores", FINITE_SCORES)] + [(name, FIELD_CONDITIONS[name]) for name in active]
    passing = [" AND ".join(c for _, c in steps[:i + 1]) for i in range(len(steps))]
    counts = ", ".join(f"count(*) FILTER (WHERE {p})" for p in passing)
    params = {name: value for name, value in pair_filter_params(spec).items() if name in active}
    row = con.execute(f"SELECT count(*), {counts} FROM {base}", params).fetchall()[0]
    total, remaining = int(row[0]), [int(v) for v in row[1:]]
    removed, before = [], total
    for (name, _), after in zip(steps, remaining):
        removed.append({"step": name, "removed": before - after, "remaining": after})
        before = after
    removed.append({"step": "duplicate_texts", "removed": before - selected, "remaining": selected})
    return {"pairs_in_store": total, "steps": removed, "selected": selected}


def index_waterfall(mem, spec: dict, active: list[str]) -> dict:
    """`filter_waterfall` over the app's in-memory pair index (`pair_index`): the same steps and
    conditions, counted without joining the store's tables (what the Curate tab draws at 10M replies)."""
    return _waterfall(mem, "pair_index", spec, active, index_selected_count(mem, spec))


def pair_account(con, pair_id: str, spec: dict) -> dict | None:
    """One pair's filter columns and, per filter field, whether it passes (NULL: field not set)."""
    checks = ", ".join(f"{cond} AS pass_{name}" for name, cond in FIELD_CONDITIONS.items())
    rows = fetch_dicts(con, f"""SELECT *, {FINITE_SCORES} AS pass_finite_scores, {checks}
                               FROM ({_BASE}) WHERE pair_id = $pair_id""", pair_filter_params(spec) | {"pair_id": pair_id})
    return rows[0] if rows else None


def matching_pair_ids(con, prefix: str, limit: int = 3) -> list[str]:
    """Pair ids that start with `prefix` (the app shows the first 8 characters)."""
    return [r["pair_id"] for r in fetch_dicts(
        con, "SELECT DISTINCT pair_id FROM pairs WHERE starts_with(pair_id, ?) ORDER BY 1 LIMIT ?", [prefix, limit])]


def text_group_winner(con, pair: dict, spec: dict) -> str | None:
    """The pair that represents this pair's (prompt, chosen text, rejected text) in the selection: of
    those the filter keeps, the largest margin, then the lowest pair id (the export's rule)."""
    return fetch_value(con, f"""SELECT pair_id FROM ({_BASE})
        WHERE prompt_id = $prompt_id AND chosen_text = $chosen AND rejected_text = $rejected AND {PAIR_FILTER}
        ORDER BY margin DESC NULLS LAST, pair_id LIMIT 1""", pair_filter_params(spec) | {
        "prompt_id": pair["prompt_id"], "chosen": pair["chosen_text"], "rejected": pair["rejected_text"]})


def response_lineage(con, response_ids: list[str]) -> list[dict]:
    """Each reply's origin, run (kind, status) and every score it has, by labeler."""
    return fetch_dicts(con, """
        SELECT r.response_id, r.origin, r.run_id, u.kind AS run_kind, u.status AS run_status, r.n_chars,
               r.finish_reason, r.flag_truncated, r.flag_repetition, r.flag_near_duplicate_of,
               (SELECT list({'labeler': coalesce(m.name || '@' || m.version, s.rm_id), 'score': s.score,
                             'run_id': s.run_id} ORDER BY m.name, m.version)
                FROM scores s LEFT JOIN reward_models m ON m.rm_id = s.rm_id
                WHERE s.response_id = r.response_id) AS scores
        FROM responses r LEFT JOIN runs u ON u.run_id = r.run_id
        WHERE list_contains(?, r.response_id) ORDER BY list_position(?, r.response_id)""",
                       [response_ids, response_ids])


def run_brief(con, run_id: str) -> dict | None:
    """A run's kind, status, times and config."""
    rows = fetch_dicts(con, "SELECT run_id, kind, status, config, started_at, finished_at FROM runs WHERE run_id = ?",
                       [run_id])
    return rows[0] if rows else None


def selection_lengths(con, spec: dict, limit: int | None) -> dict:
    """Chosen vs rejected reply length (characters) over the pairs an export writes: Cohen's d with
    the pooled standard deviation, the share of unequal-length pairs whose chosen reply is longer, and
    the same two for the pairs within a few length ratios (what `--max-length-ratio` would keep)."""
    params = pair_filter_params(spec) | ({"limit": int(limit)} if limit is not None else {})
    written = "SELECT chosen_chars AS c, rejected_chars AS r FROM selected ORDER BY pair_id" + (
        " LIMIT $limit" if limit is not None else "")
    def stats(suffix: str, where: str = "true") -> str:
        return f"""count(*) FILTER (WHERE {where}) AS pairs{suffix},
        (avg(c) FILTER (WHERE {where}) - avg(r) FILTER (WHERE {where}))
            / nullif(sqrt((var_samp(c) FILTER (WHERE {where}) + var_samp(r) FILTER (WHERE {where})) / 2), 0)
            AS cohens_d{suffix},
        avg(CASE WHEN c > r THEN 1.0 WHEN c < r THEN 0.0 END) FILTER (WHERE {where}) AS longer_wins{suffix}"""

    # one pass over the written pairs: all of them, and those within each length ratio
    columns = ", ".join([stats("")] + [stats(f"_{i}", f"greatest(c, r) <= {float(ratio)} * least(c, r)")
                                       for i, ratio in enumerate(LENGTH_RATIOS)])
    row = fetch_dicts(con, EXPORT_SELECTED + f"SELECT {columns} FROM ({written})", params)[0]
    names = ("pairs", "cohens_d", "longer_wins")
    result = {name: row[name] for name in names}
    result["within_ratio"] = [{"ratio": ratio, **{name: row[f"{name}_{i}"] for name in names}}
                              for i, ratio in enumerate(LENGTH_RATIOS)]
    return result
