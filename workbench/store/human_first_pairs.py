"""SQL of `pairs build --labels human-first` (`workbench.curate.human_first`): a reward model's pairs,
each one the human verdict on its two replies (`queries.HUMAN_VERDICTS`) keeps, flips or drops."""

from __future__ import annotations

from workbench.store import content_ids
from workbench.store.queries.fetch import count_changed, fetch_dicts
from workbench.store.queries.pairs import _pairs_sql
from workbench.store.queries.review_labels import HUMAN_VERDICTS

# The strategy's pairs with the human vote on their replies (NULL: no human verdict).
_DECIDED = """
SELECT f.*, v.vote FROM ({found}) f
LEFT JOIN ({verdicts}) v ON v.prompt_id = f.prompt_id AND v.first_id = least(f.chosen_id, f.rejected_id)
                        AND v.second_id = greatest(f.chosen_id, f.rejected_id)
"""

# Kept as the reward model ordered them ('rm'), confirmed or flipped by people ('human'); a tie or
# "both bad" verdict drops the pair. Scores stay each reply's own, so a flipped pair's margin is negative.
_HUMAN_FIRST = """
SELECT prompt_id,
       CASE WHEN flip THEN rejected_id ELSE chosen_id END AS chosen_id,
       CASE WHEN flip THEN chosen_id ELSE rejected_id END AS rejected_id,
       CASE WHEN vote IS NULL THEN 'rm' ELSE 'human' END AS label_source,
       CASE WHEN flip THEN score_rejected ELSE score_chosen END AS score_chosen,
       CASE WHEN flip THEN score_chosen ELSE score_rejected END AS score_rejected,
       CASE WHEN flip THEN -margin ELSE margin END AS margin
FROM (SELECT *, coalesce(vote = rejected_id, false) AS flip FROM decided_pairs)
WHERE vote IS NULL OR vote IN (chosen_id, rejected_id)
"""


def insert_human_first_pairs(con, strategy: str, params: dict, labeler_id: str, *, spec: str,
                             run_id: str) -> dict:
    """Build the reward model's pairs (params["rm_id"]), apply the human verdicts and store the new
    pairs under `labeler_id`; counts: found, kept, confirmed, flipped, dropped, new."""
    sql, named = _pairs_sql(strategy, params)
    con.execute("CREATE OR REPLACE TEMP TABLE decided_pairs AS " + _DECIDED.format(found=sql, verdicts=HUMAN_VERDICTS),
                named)
    counts = fetch_dicts(con, """
        SELECT count(*) AS found, count(*) FILTER (WHERE vote = chosen_id) AS confirmed,
               count(*) FILTER (WHERE vote = rejected_id) AS flipped,
               count(*) FILTER (WHERE vote IS NOT NULL AND vote NOT IN (chosen_id, rejected_id)) AS dropped
        FROM decided_pairs""")[0]
    pair_id = content_ids.pair_id("$labeler", "$spec", "chosen_id", "rejected_id")
    con.execute(f"CREATE OR REPLACE TEMP TABLE human_first_pairs AS SELECT {pair_id} AS pair_id, * FROM ({_HUMAN_FIRST})",
                {"labeler": labeler_id, "spec": spec})
    counts["kept"] = counts["found"] - counts["dropped"]
    counts["new"] = count_changed(con, """
        INSERT INTO pairs (pair_id, prompt_id, chosen_id, rejected_id, label_source, rm_id, strategy, params,
                           score_chosen, score_rejected, margin, run_id, created_at)
        SELECT pair_id, prompt_id, chosen_id, rejected_id, label_source, $labeler, $strategy, $spec, score_chosen,
               score_rejected, margin, $run, current_timestamp
        FROM human_first_pairs f WHERE NOT EXISTS (SELECT 1 FROM pairs t WHERE t.pair_id = f.pair_id)""",
                                  {"labeler": labeler_id, "strategy": strategy, "spec": spec, "run": run_id})
    con.execute("DROP TABLE decided_pairs; DROP TABLE human_first_pairs")
    return counts


def human_verdict_rows(con) -> list[tuple]:
    """Every human verdict (prompt_id, first_id, second_id, vote), in a fixed order: what a
    human-first labeler's identity is computed from."""
    return con.execute(f"SELECT prompt_id, first_id, second_id, vote FROM ({HUMAN_VERDICTS}) ORDER BY 1, 2, 3").fetchall()
