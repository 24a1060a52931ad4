"""SQL of pairs built from several reward models (`workbench.curate.combine`).

The members' scores are standardised and averaged into the temporary table `combined_scores`
(same columns as `scores`), and the pair strategies of `queries` run on it unchanged, so the
tie rules are the single-model ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store import content_ids
from workbench.store.queries.fetch import fetch_dicts, fetch_value
from workbench.store.queries.pairs import candidate_pairs, insert_found_pairs

if TYPE_CHECKING:  # annotations only: reading this module loads no pyarrow
    import pyarrow as pa

COMBINED_SCORES = "combined_scores"

_MEMBER_SCORES = """
WITH sel AS (
    SELECT r.response_id FROM responses r
    WHERE ($source IS NULL OR r.prompt_id IN (SELECT prompt_id FROM prompts WHERE source = $source))
      AND ($run IS NULL OR r.run_id = $run)
), member AS (
    SELECT s.response_id, s.rm_id, s.score FROM scores s JOIN sel USING (response_id)
    WHERE list_contains($members, s.rm_id)
), complete AS (  -- responses every member has scored
    SELECT response_id FROM member GROUP BY 1 HAVING count(DISTINCT rm_id) = len($members)
), common AS (
    SELECT * FROM member WHERE response_id IN (SELECT response_id FROM complete)
)
"""


def member_spread(con, members: list[str], source: str | None, run: str | None) -> list[dict]:
    """Per member: rm_id, n (responses all members scored), mean and population std of its scores there."""
    return fetch_dicts(con, _MEMBER_SCORES + """
        SELECT rm_id, count(*) AS n, avg(score) AS mean, stddev_pop(score) AS std FROM common GROUP BY 1""",
                 {"members": members, "source": source, "run": run})


def stage_combined_scores(con, members: list[str], combined_id: str, source: str | None, run: str | None) -> int:
    """`combined_scores`: the mean over members of each one's z-score (over the common responses)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {COMBINED_SCORES} AS " + _MEMBER_SCORES + """
        , z AS (SELECT response_id, (score - avg(score) OVER w) / stddev_pop(score) OVER w AS z
                FROM common WINDOW w AS (PARTITION BY rm_id))
        SELECT response_id, $combined AS rm_id, avg(z) AS score FROM z GROUP BY response_id""",
                {"members": members, "source": source, "run": run, "combined": combined_id})
    return fetch_value(con, f"SELECT count(*) FROM {COMBINED_SCORES}")


def insert_combined_pairs(con, strategy: str, params: dict, margins: pa.Table | None, *, spec: str,
                          run_id: str) -> tuple[int, int, int]:
    """Pairs of the strategy on `combined_scores`; with `margins` (rm_id, min_margin) only those that
    every member orders the same way by at least its margin. (found by the strategy, kept, new)."""
    found = candidate_pairs(con, strategy, params, scores=COMBINED_SCORES)
    pair_id = content_ids.pair_id("$rm", "$spec", "f.chosen_id", "f.rejected_id")
    agree = "true" if margins is None else """NOT EXISTS (
        SELECT 1 FROM member_margins m
        JOIN scores c ON c.rm_id = m.rm_id AND c.response_id = f.chosen_id
        JOIN scores r ON r.rm_id = m.rm_id AND r.response_id = f.rejected_id
        WHERE NOT (c.score > r.score AND c.score - r.score >= m.min_margin))"""
    con.register("found_pairs", found)
    if margins is not None:
        con.register("member_margins", margins)
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE kept_pairs AS
            SELECT {pair_id} AS pair_id, f.* FROM found_pairs f WHERE {agree}""", {"rm": params["rm_id"], "spec": spec})
        kept = fetch_value(con, "SELECT count(*) FROM kept_pairs")
        new = insert_found_pairs(con, "kept_pairs", params["rm_id"], strategy, spec=spec, run_id=run_id)
    finally:
        con.unregister("found_pairs")
        if margins is not None:
            con.unregister("member_margins")
        con.execute(f"DROP TABLE IF EXISTS kept_pairs; DROP TABLE IF EXISTS {COMBINED_SCORES}")
    return found.num_rows, int(kept), new
