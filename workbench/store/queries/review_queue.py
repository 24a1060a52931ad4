"""Review queues: the pairs each queue source proposes, the items of a queue, the next item an
annotator sees (`workbench.review.queue`).

Sources work on labelers generically: any registered reward model, combination or judge (a
`reward_models` row whose config says `"kind": "judge"`) with pairs in `pairs` or scores in `scores`.
An item names a pair's two replies in id order (`first_id` < `second_id`), so the item never says
which one the labeler chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import count_changed, fetch_dicts, fetch_rows, fetch_value

if TYPE_CHECKING:  # annotations only: reading this module loads no pyarrow
    import pyarrow as pa

# A labeler is an LLM judge when it registered with {"kind": "judge"} (`workbench judge`).
_IS_JUDGE = "coalesce(json_extract_string({m}.config, '$.kind'), '') = 'judge'"
# Where pairwise judges keep each verdict (`workbench judge`): per judge and unordered pair of replies
# (response_a < response_b), `consistent` says whether the winner held when the replies swapped places
# (NULL when an order gave no verdict).
JUDGE_POSITIONS_TABLE = "judge_pair_verdicts"

_SIDES = "least(pr.chosen_id, pr.rejected_id) AS first_id, greatest(pr.chosen_id, pr.rejected_id) AS second_id"
_OF_LABELERS = "($labelers IS NULL OR list_contains($labelers, pr.rm_id))"

# Pairs whose stored labeler (own) another labeler (other) orders the other way, by their scores
# in `scores`; the more labelers disagree, the earlier the pair comes.
_DISAGREEMENT = f"""
SELECT pr.pair_id, pr.prompt_id, {_SIDES}, -count(DISTINCT o.rm_id) AS rank_key
FROM pairs pr
JOIN reward_models own ON own.rm_id = pr.rm_id
JOIN scores sc ON sc.response_id = pr.chosen_id
JOIN scores sr ON sr.response_id = pr.rejected_id AND sr.rm_id = sc.rm_id
JOIN reward_models o ON o.rm_id = sc.rm_id
WHERE pr.label_source = 'rm' AND o.rm_id <> pr.rm_id AND sc.score < sr.score
  AND {{own}} AND {{other}}
  AND ($labelers IS NULL OR (list_contains($labelers, pr.rm_id) AND list_contains($labelers, o.rm_id)))
GROUP BY ALL
"""

# Each source: pair_id, prompt_id, first_id, second_id and rank_key (smaller first).
SOURCE_SQL = {
    "lowest-margin": f"""
        SELECT pr.pair_id, pr.prompt_id, {_SIDES}, abs(pr.margin) AS rank_key FROM pairs pr
        WHERE pr.label_source = 'rm' AND isfinite(pr.margin) AND {_OF_LABELERS}""",
    "rm-disagreement": _DISAGREEMENT.format(own="NOT " + _IS_JUDGE.format(m="own"),
                                            other="NOT " + _IS_JUDGE.format(m="o")),
    "judge-vs-rm": _DISAGREEMENT.format(own="true", other=f"({_IS_JUDGE.format(m='own')}) <> ({_IS_JUDGE.format(m='o')})"),
    "judge-inconsistent": f"""
        SELECT pr.pair_id, pr.prompt_id, {_SIDES}, -count(DISTINCT j.rm_id) AS rank_key
        FROM pairs pr JOIN {JUDGE_POSITIONS_TABLE} j ON j.prompt_id = pr.prompt_id
         AND j.response_a = least(pr.chosen_id, pr.rejected_id) AND j.response_b = greatest(pr.chosen_id, pr.rejected_id)
        WHERE j.consistent IS FALSE AND ($labelers IS NULL OR list_contains($labelers, j.rm_id))
        GROUP BY ALL""",
    # uniform over the stored pairs: a seeded hash of the id is a random permutation
    "random-audit": f"""
        SELECT pr.pair_id, pr.prompt_id, {_SIDES}, 0 AS rank_key FROM pairs pr WHERE {_OF_LABELERS}""",
}


def judge_count(con) -> int:
    """How many labelers in the store are LLM judges."""
    return fetch_value(con, f"SELECT count(*) FROM reward_models m WHERE {_IS_JUDGE.format(m='m')}")


def has_judge_positions(con) -> bool:
    """Whether judges have recorded position consistency in this store (`workbench judge`)."""
    return bool(fetch_value(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [JUDGE_POSITIONS_TABLE]))


def proposed_pairs(con, source: str, queue: str, size: int, seed: int, labelers: list[str] | None) -> pa.Table:
    """Up to `size` pairs of the source not in the queue yet (one per reply pair), best ranked first
    (ties and the audit sample in a seeded random order)."""
    sql = f"""
        WITH cand AS ({SOURCE_SQL[source]}),
        one AS (SELECT * FROM cand QUALIFY row_number() OVER (
                    PARTITION BY prompt_id, first_id, second_id ORDER BY rank_key, md5($seed || pair_id)) = 1)
        SELECT pair_id, prompt_id, first_id, second_id FROM one
        WHERE NOT EXISTS (SELECT 1 FROM review_items i WHERE i.queue = $queue AND i.prompt_id = one.prompt_id
                          AND i.first_id = one.first_id AND i.second_id = one.second_id)
        ORDER BY rank_key, md5($seed || pair_id) LIMIT $size"""
    return con.sql(sql, params={"seed": str(seed), "queue": queue, "size": size,
                                "labelers": labelers}).to_arrow_table()


def insert_review_items(con, items: pa.Table) -> int:
    """Append items (item_id, queue, source, pair_id, prompt_id, first_id, second_id, overlap) at the end of
    their queue, keeping their order; items already there are left as they are. Returns how many were new."""
    con.register("new_items", items)
    try:
        return count_changed(con, """
            INSERT INTO review_items
            SELECT n.item_id, n.queue, n.source, n.pair_id, n.prompt_id, n.first_id, n.second_id, n.overlap,
                   coalesce((SELECT max(position) FROM review_items i WHERE i.queue = n.queue), 0)
                   + row_number() OVER (PARTITION BY n.queue ORDER BY n.ord), current_timestamp
            FROM (SELECT *, row_number() OVER () AS ord FROM new_items) n
            WHERE NOT EXISTS (SELECT 1 FROM review_items i WHERE i.item_id = n.item_id)""")
    finally:
        con.unregister("new_items")


def review_queues(con) -> list[dict]:
    """Each queue: name, items, labels (not skips), items still short of their overlap."""
    return fetch_dicts(con, """
        SELECT i.queue, count(DISTINCT i.item_id) AS items,
               count(l.item_id) FILTER (WHERE l.verdict <> 'skip') AS labels,
               count(DISTINCT i.item_id) - count(DISTINCT i.item_id) FILTER (WHERE done.item_id IS NOT NULL) AS open
        FROM review_items i
        LEFT JOIN review_labels l USING (item_id)
        LEFT JOIN (SELECT i2.item_id FROM review_items i2 JOIN review_labels l2 USING (item_id)
                   WHERE l2.verdict <> 'skip' GROUP BY i2.item_id, i2.overlap HAVING count(*) >= i2.overlap) done
               ON done.item_id = i.item_id
        GROUP BY i.queue ORDER BY i.queue""")


_OPEN_FOR = """
    FROM review_items i
    WHERE i.queue = $queue
      AND NOT EXISTS (SELECT 1 FROM review_labels l WHERE l.item_id = i.item_id AND l.annotator = $annotator)
      AND (SELECT count(*) FROM review_labels l WHERE l.item_id = i.item_id AND l.verdict <> 'skip') < i.overlap
"""


def next_review_item(con, queue: str, annotator: str) -> dict | None:
    """The first item of the queue this annotator has not labelled (or skipped) and that still needs
    labels, with the prompt and both replies' texts; None when there is none."""
    rows = fetch_dicts(con, f"""
        SELECT i.item_id, i.queue, i.source, i.pair_id, i.prompt_id, i.first_id, i.second_id, i.overlap,
               p.messages, p.text AS prompt_text, a.text AS first_text, b.text AS second_text
        FROM (SELECT * {_OPEN_FOR} ORDER BY i.position LIMIT 1) i
        JOIN prompts p ON p.prompt_id = i.prompt_id
        JOIN responses a ON a.response_id = i.first_id
        JOIN responses b ON b.response_id = i.second_id""", {"queue": queue, "annotator": annotator})
    return rows[0] if rows else None


def open_item_count(con, queue: str, annotator: str) -> int:
    """How many items of the queue this annotator could still label."""
    return fetch_value(con, f"SELECT count(*) {_OPEN_FOR}", {"queue": queue, "annotator": annotator})


def reply_scores(con, response_ids: list[str]) -> list[tuple]:
    """(labeler NAME@VERSION, response_id, score) of every labeler that scored these replies."""
    return fetch_rows(con, """
        SELECT m.name || '@' || m.version, s.response_id, s.score FROM scores s
        JOIN reward_models m USING (rm_id) WHERE list_contains($ids, s.response_id) ORDER BY 1, 2""",
                      {"ids": response_ids})


def get_review_item(con, item_id: str) -> dict | None:
    rows = fetch_dicts(con, "SELECT * FROM review_items WHERE item_id = ?", [item_id])
    return rows[0] if rows else None


def judge_position_consistency(con) -> list[dict]:
    """Per judge: pairs judged in both orders and the share whose winner held when the replies swapped."""
    return fetch_dicts(con, f"""
        SELECT m.name || '@' || m.version AS judge, count(j.consistent) AS pairs,
               avg(CAST(j.consistent AS DOUBLE)) AS consistency
        FROM {JUDGE_POSITIONS_TABLE} j JOIN reward_models m USING (rm_id)
        GROUP BY 1 HAVING count(j.consistent) > 0 ORDER BY 1""")
