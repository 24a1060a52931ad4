"""LLM judges: what is left to judge, their verdicts and ratings, the scores derived from them, and
how they compare with human labels.

`judge_pair_verdicts` holds one row per judge and unordered pair of replies (response_a < response_b),
with both orders' probabilities and whether they agree (`consistent`): `pair_verdicts` and
`inconsistent_pairs` read it for whoever needs a judge's verdict or its position consistency per pair.
Lists of ids arrive as one bound list and are matched with `IN (SELECT unnest($ids))`, a hash
semi-join (a per-row `list_contains` would scan the whole list for every row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.export import EXPORT_SELECTED
from workbench.store.queries.fetch import count_changed, fetch_dicts, fetch_rows
from workbench.store.queries.pair_filter import pair_filter_params

if TYPE_CHECKING:  # annotations only: reading these modules loads no pyarrow
    import pyarrow as pa

_NOT_JUDGED = """NOT EXISTS (SELECT 1 FROM judge_pair_verdicts v WHERE v.rm_id = $judge
                                  AND v.response_a = least({a}, {b}) AND v.response_b = greatest({a}, {b}))"""


def stored_pairs_to_judge(con, spec: dict, limit: int | None, judge_id: str) -> list[tuple[str, str, str]]:
    """(prompt_id, response_a, response_b) of the pairs an export with this filter would write (its
    `limit` first, in pair-id order), as unordered pairs a < b, less those this judge has judged."""
    params = pair_filter_params(spec) | {"judge": judge_id}
    limited = "SELECT * FROM selected ORDER BY pair_id" + (" LIMIT $limit" if limit is not None else "")
    if limit is not None:
        params["limit"] = int(limit)
    return fetch_rows(con, EXPORT_SELECTED + f"""
        SELECT DISTINCT prompt_id, least(chosen_id, rejected_id) AS a, greatest(chosen_id, rejected_id) AS b
        FROM ({limited}) l
        WHERE chosen_text <> rejected_text AND {_NOT_JUDGED.format(a="chosen_id", b="rejected_id")}
        ORDER BY prompt_id, a, b""", params)


def replies_of_prompts(con, prompt_ids: list[str], generation_run: str | None) -> list[tuple[str, str, str]]:
    """(prompt_id, response_id, text) of these prompts' replies (of one generation run, if given),
    one per distinct text (the smallest id), by prompt and id."""
    return fetch_rows(con, """
        SELECT prompt_id, min(response_id) AS response_id, text FROM responses
        WHERE prompt_id IN (SELECT unnest($ids)) AND ($run IS NULL OR run_id = $run)
        GROUP BY prompt_id, text ORDER BY prompt_id, response_id""", {"ids": prompt_ids, "run": generation_run})


def judged_pair_keys(con, judge_id: str, prompt_ids: list[str]) -> set[tuple[str, str]]:
    """(response_a, response_b) of the pairs of these prompts this judge has judged."""
    return set(fetch_rows(con, "SELECT response_a, response_b FROM judge_pair_verdicts "
                               "WHERE rm_id = $judge AND prompt_id IN (SELECT unnest($ids))",
                          {"judge": judge_id, "ids": prompt_ids}))


def judging_inputs(con, prompt_ids: list[str], response_ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({prompt_id: messages JSON}, {response_id: text}) of what a judge reads."""
    prompts = dict(fetch_rows(con, "SELECT prompt_id, messages FROM prompts WHERE prompt_id IN (SELECT unnest($ids))",
                              {"ids": prompt_ids}))
    texts = dict(fetch_rows(con, "SELECT response_id, text FROM responses WHERE response_id IN (SELECT unnest($ids))",
                            {"ids": response_ids}))
    return prompts, texts


def _insert_absent(con, table_name: str, keys: tuple[str, ...], table: pa.Table) -> int:
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    match = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    con.register("incoming_verdicts", table)
    try:
        return count_changed(con, f"""
            INSERT INTO {table_name} ({columns}, created_at)
            SELECT {", ".join(f's."{c}"' for c in table.column_names)}, current_timestamp FROM incoming_verdicts s
            WHERE NOT EXISTS (SELECT 1 FROM {table_name} t WHERE {match})""")
    finally:
        con.unregister("incoming_verdicts")


def insert_pair_verdicts(con, table: pa.Table) -> int:
    """Store pairwise verdicts (Arrow rows in `judge_pair_verdicts`' columns) not stored yet."""
    return _insert_absent(con, "judge_pair_verdicts", ("rm_id", "response_a", "response_b"), table)


def insert_ratings(con, table: pa.Table) -> int:
    """Store rubric ratings (Arrow rows in `judge_ratings`' columns) not stored yet."""
    return _insert_absent(con, "judge_ratings", ("rm_id", "response_id"), table)


def prompt_verdicts(con, judge_id: str, prompt_ids: list[str]) -> list[tuple[str, str, str, float]]:
    """(prompt_id, response_a, response_b, p_a_better) of every verdict of these prompts (parsed ones only)."""
    return fetch_rows(con, """
        SELECT prompt_id, response_a, response_b, p_a_better FROM judge_pair_verdicts
        WHERE rm_id = $judge AND prompt_id IN (SELECT unnest($ids)) AND p_a_better IS NOT NULL
        ORDER BY prompt_id, response_a, response_b""", {"judge": judge_id, "ids": prompt_ids})


def replace_scores(con, rm_id: str, response_ids: list[str], table: pa.Table) -> None:
    """The labeler's scores of these replies, replaced by `table` (response_id, rm_id, score, run_id)."""
    con.execute("DELETE FROM scores WHERE rm_id = $rm AND response_id IN (SELECT unnest($ids))",
                {"rm": rm_id, "ids": response_ids})
    _insert_absent(con, "scores", ("response_id", "rm_id"), table)


def responses_to_rate(con, judge_id: str, prompt_ids: list[str], generation_run: str | None) -> list[tuple[str, str]]:
    """(response_id, prompt_id) of these prompts' replies the judge has not rated, by id."""
    return fetch_rows(con, """
        SELECT r.response_id, r.prompt_id FROM responses r
        WHERE r.prompt_id IN (SELECT unnest($ids)) AND ($run IS NULL OR r.run_id = $run)
          AND NOT EXISTS (SELECT 1 FROM judge_ratings j WHERE j.rm_id = $judge AND j.response_id = r.response_id)
        ORDER BY r.response_id""", {"ids": prompt_ids, "run": generation_run, "judge": judge_id})


def pair_verdicts(con, judge_id: str) -> list[dict]:
    """Every pairwise verdict of a judge: prompt, both replies, both orders, combined, consistent, answers."""
    return fetch_dicts(con, "SELECT * EXCLUDE (created_at) FROM judge_pair_verdicts WHERE rm_id = ? "
                            "ORDER BY prompt_id, response_a, response_b", [judge_id])


def inconsistent_pairs(con, judge_id: str) -> list[tuple[str, str, str]]:
    """(prompt_id, response_a, response_b) of the pairs whose winner changed with the order shown."""
    return fetch_rows(con, "SELECT prompt_id, response_a, response_b FROM judge_pair_verdicts "
                           "WHERE rm_id = ? AND consistent = false ORDER BY 1, 2, 3", [judge_id])


def pair_verdict_counts(con, judge_id: str) -> dict:
    """pairs judged, with a verdict, unparseable (either order), consistent, inconsistent, even orders, and
    the mean P(the reply shown first is better) over both orders (0.5 for a judge without position bias)."""
    row = fetch_dicts(con, """
        SELECT count(*) AS pairs, count(p_a_better) AS with_verdict,
               count(*) FILTER (WHERE p_a_first IS NULL OR p_a_second IS NULL) AS unparseable,
               count(*) FILTER (WHERE consistent) AS consistent,
               count(*) FILTER (WHERE NOT consistent) AS inconsistent,
               round(avg((p_a_first + 1 - p_a_second) / 2), 4) AS p_first_shown_better
        FROM judge_pair_verdicts WHERE rm_id = ?""", [judge_id])[0]
    row["even"] = row["with_verdict"] - row["consistent"] - row["inconsistent"]
    return row


def rating_counts(con, judge_id: str) -> dict:
    return fetch_dicts(con, "SELECT count(*) AS rated, count(rating) AS with_rating, "
                            "count(*) - count(rating) AS unparseable, avg(rating) AS mean_rating "
                            "FROM judge_ratings WHERE rm_id = ?", [judge_id])[0]


def human_pair_agreement(con, judge_id: str) -> tuple[int, int, int]:
    """(human-labelled pairs with a verdict, of which the judge prefers the human's choice, of which it
    is even on) from the pairwise verdicts: P(human's chosen better) > 0.5 is agreement."""
    return fetch_rows(con, """
        WITH human AS (SELECT DISTINCT chosen_id, rejected_id FROM pairs WHERE label_source = 'human'),
        judged AS (
            SELECT CASE WHEN h.chosen_id = v.response_a THEN v.p_a_better ELSE 1 - v.p_a_better END AS p_chosen
            FROM human h JOIN judge_pair_verdicts v ON v.rm_id = $judge AND v.p_a_better IS NOT NULL
             AND v.response_a = least(h.chosen_id, h.rejected_id) AND v.response_b = greatest(h.chosen_id, h.rejected_id))
        SELECT count(*), count(*) FILTER (WHERE p_chosen > 0.5), count(*) FILTER (WHERE p_chosen = 0.5)
        FROM judged""", {"judge": judge_id})[0]


def human_score_agreement(con, rm_id: str) -> tuple[int, int, int]:
    """(human-labelled pairs whose replies this labeler scored both, of which it scores the chosen higher,
    of which it ties): any labeler's agreement with the human labels, from its scores."""
    return fetch_rows(con, """
        WITH human AS (SELECT DISTINCT chosen_id, rejected_id FROM pairs WHERE label_source = 'human')
        SELECT count(*), count(*) FILTER (WHERE c.score > r.score), count(*) FILTER (WHERE c.score = r.score)
        FROM human h JOIN scores c ON c.response_id = h.chosen_id AND c.rm_id = $rm
        JOIN scores r ON r.response_id = h.rejected_id AND r.rm_id = $rm""", {"rm": rm_id})[0]
