"""Who labelled a set of pairs: the stored pairs on the same two replies of the same prompt."""

from __future__ import annotations

from workbench.store.queries.fetch import fetch_rows


def labelers_of_pairs(con, prompt_ids: list[str], first: list[str], second: list[str]) -> dict[int, set[str]]:
    """{index: labelers} for the pairs given as (prompt id, one reply's text, the other's): each stored
    pair of that prompt on those two replies, in either order, names its labeler (an rm_id, or
    'human'). Pairs nothing in the store ordered are absent."""
    import pyarrow as pa

    table = pa.table({"idx": pa.array(range(len(prompt_ids)), pa.int64()), "prompt_id": prompt_ids,
                      "first": first, "second": second})
    con.register("asked_pairs", table)
    try:
        rows = fetch_rows(con, """
            SELECT q.idx, coalesce(pr.rm_id, 'human')
            FROM asked_pairs q
            JOIN pairs pr ON pr.prompt_id = q.prompt_id
            JOIN responses c ON c.response_id = pr.chosen_id
            JOIN responses r ON r.response_id = pr.rejected_id
            WHERE (c.text = q.first AND r.text = q.second) OR (c.text = q.second AND r.text = q.first)
            GROUP BY ALL""")
    finally:
        con.unregister("asked_pairs")
    found: dict[int, set[str]] = {}
    for idx, labeler in rows:
        found.setdefault(int(idx), set()).add(labeler)
    return found
