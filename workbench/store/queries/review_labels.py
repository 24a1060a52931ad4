"""Review labels: storing one, reading them back for agreement and export, and the human verdict on
a pair of replies (the majority of its annotators) that `pairs build --labels human-first` applies.

A label's `vote` is the reply judged better (its response id), or 'tie' / 'both-bad'; skips are
stored (so the item is not shown to that annotator again) but are never votes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.store.queries.fetch import fetch_dicts, fetch_rows, fetch_value

if TYPE_CHECKING:  # annotations only: reading this module loads no pyarrow
    import pyarrow as pa

VOTE = "CASE WHEN l.verdict = 'better' THEN l.preferred_id ELSE l.verdict END"

# Each annotator's latest vote on each pair of replies (over every queue that holds it), and the
# vote more than half of them gave: the human verdict. A pair whose annotators split has none.
HUMAN_VERDICTS = f"""
SELECT prompt_id, first_id, second_id, vote, n AS votes, total AS annotators FROM (
    SELECT prompt_id, first_id, second_id, vote, count(*) AS n,
           sum(count(*)) OVER (PARTITION BY prompt_id, first_id, second_id) AS total
    FROM (SELECT i.prompt_id, i.first_id, i.second_id, l.annotator, arg_max({VOTE}, l.labeled_at) AS vote
          FROM review_labels l JOIN review_items i USING (item_id) WHERE l.verdict <> 'skip' GROUP BY 1, 2, 3, 4)
    GROUP BY 1, 2, 3, 4)
WHERE 2 * n > total
"""


def store_identity(con) -> str:
    """The store's random id (drawn once, by the migration that added review)."""
    return fetch_value(con, "SELECT store_id FROM store_identity LIMIT 1")


def annotator_has_labelled(con, item_id: str, annotator: str) -> bool:
    return bool(fetch_value(con, "SELECT count(*) FROM review_labels WHERE item_id = ? AND annotator = ?",
                            [item_id, annotator]))


def item_vote_count(con, item_id: str) -> int:
    """How many annotators labelled the item (skips not counted)."""
    return fetch_value(con, "SELECT count(*) FROM review_labels WHERE item_id = ? AND verdict <> 'skip'", [item_id])


def insert_review_label(con, label: dict) -> None:
    """Store one label (item_id, annotator, verdict, preferred_id, left_id, right_id, note, labeled_at)."""
    con.execute("""INSERT INTO review_labels VALUES ($item_id, $annotator, $verdict, $preferred_id, $left_id,
                   $right_id, $note, coalesce(CAST($labeled_at AS TIMESTAMP), current_timestamp))""", label)


def labels_by_annotator(con, annotator: str, queue: str | None = None) -> int:
    return fetch_value(con, """SELECT count(*) FROM review_labels l JOIN review_items i USING (item_id)
                               WHERE l.annotator = ? AND (? IS NULL OR i.queue = ?)""", [annotator, queue, queue])


def review_votes(con, queue: str | None = None) -> list[dict]:
    """Every vote (skips left out): item, queue, source, prompt (id and text), both replies, annotator, vote,
    the reply shown on the left, note, time."""
    return fetch_dicts(con, f"""
        SELECT i.item_id, i.queue, i.source, i.prompt_id, p.text AS prompt, i.first_id, i.second_id, l.annotator,
               {VOTE} AS vote, l.left_id, l.note, l.labeled_at
        FROM review_labels l JOIN review_items i USING (item_id) JOIN prompts p ON p.prompt_id = i.prompt_id
        WHERE l.verdict <> 'skip' AND ($queue IS NULL OR i.queue = $queue)
        ORDER BY i.queue, i.position, l.annotator""", {"queue": queue})


def labeler_scores_on_items(con, queue: str | None = None) -> list[tuple]:
    """(item_id, labeler NAME@VERSION, kind, score of first, score of second) for every labeler that
    scored both replies of a reviewed item."""
    return fetch_rows(con, """
        SELECT i.item_id, m.name || '@' || m.version, coalesce(json_extract_string(m.config, '$.kind'), ''),
               a.score, b.score
        FROM review_items i
        JOIN scores a ON a.response_id = i.first_id
        JOIN scores b ON b.response_id = i.second_id AND b.rm_id = a.rm_id
        JOIN reward_models m ON m.rm_id = a.rm_id
        WHERE ($queue IS NULL OR i.queue = $queue)
          AND i.item_id IN (SELECT item_id FROM review_labels WHERE verdict <> 'skip')""", {"queue": queue})


def review_export_rows(con, queue: str | None) -> list[dict]:
    """Each item of the queue (or all) with its prompt, replies and labels, in queue order."""
    return fetch_dicts(con, """
        SELECT i.queue, i.position, i.item_id, i.source, i.pair_id, i.prompt_id, i.first_id, i.second_id, i.overlap,
               p.text AS prompt, a.text AS first_text, b.text AS second_text,
               coalesce(list({'annotator': l.annotator, 'verdict': l.verdict, 'preferred_id': l.preferred_id,
                              'left_id': l.left_id, 'right_id': l.right_id, 'note': l.note,
                              'labeled_at': strftime(l.labeled_at, '%Y-%m-%dT%H:%M:%S.%f')}
                             ORDER BY l.labeled_at, l.annotator) FILTER (WHERE l.item_id IS NOT NULL), []) AS labels
        FROM review_items i
        JOIN prompts p USING (prompt_id)
        JOIN responses a ON a.response_id = i.first_id
        JOIN responses b ON b.response_id = i.second_id
        LEFT JOIN review_labels l USING (item_id)
        WHERE ($queue IS NULL OR i.queue = $queue)
        GROUP BY ALL ORDER BY i.queue, i.position""", {"queue": queue})


def known_pairs(con, pair_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """{pair_id: (prompt_id, first_id, second_id)} of the given pairs the store holds (a join, not a
    list lookup per stored pair: an import may name many)."""
    import pyarrow as pa

    con.register("asked_pair_ids", pa.table({"pair_id": pa.array(sorted(set(pair_ids)), pa.string())}))
    try:
        rows = fetch_rows(con, """
            SELECT p.pair_id, p.prompt_id, least(p.chosen_id, p.rejected_id), greatest(p.chosen_id, p.rejected_id)
            FROM pairs p SEMI JOIN asked_pair_ids a ON a.pair_id = p.pair_id""")
    finally:
        con.unregister("asked_pair_ids")
    return {pair_id: (prompt, first, second) for pair_id, prompt, first, second in rows}


def replace_review_labels(con, labels: pa.Table) -> int:
    """Store imported labels, each replacing that annotator's label on that item; returns how many."""
    con.register("imported_labels", labels)
    try:
        con.execute("""DELETE FROM review_labels l USING imported_labels n
                       WHERE l.item_id = n.item_id AND l.annotator = n.annotator""")
        con.execute("""INSERT INTO review_labels SELECT item_id, annotator, verdict, preferred_id, left_id, right_id,
                       note, coalesce(CAST(labeled_at AS TIMESTAMP), current_timestamp) FROM imported_labels""")
        return labels.num_rows
    finally:
        con.unregister("imported_labels")


def votes_on_replies(con, prompt_id: str, one: str, other: str) -> list[dict]:
    """Every human vote (skips left out) on these two replies of the prompt, over all queues: annotator,
    queue, vote (a response id, 'tie' or 'both-bad'), note, time."""
    return fetch_dicts(con, f"""
        SELECT l.annotator, i.queue, {VOTE} AS vote, l.note, l.labeled_at
        FROM review_labels l JOIN review_items i USING (item_id)
        WHERE l.verdict <> 'skip' AND i.prompt_id = $prompt AND i.first_id = least($one, $other)
          AND i.second_id = greatest($one, $other)
        ORDER BY l.labeled_at, l.annotator""", {"prompt": prompt_id, "one": one, "other": other})
