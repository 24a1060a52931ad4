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


def decided_by_kind(con, spec: dict, limit: int | None) -> dict[str, int]:
    """How many of an export's pairs each kind of labeler decided: 'human' (imported human pairs, and
    pairs a human verdict kept or flipped), 'judge' (an LLM judge's), 'reward model' (any other)."""
    from workbench.store.queries.export import EXPORT_SELECTED, _export_params

    limited = "SELECT * FROM selected ORDER BY pair_id" + (" LIMIT $limit" if limit is not None else "")
    rows = fetch_rows(con, EXPORT_SELECTED + f"""
        SELECT CASE WHEN s.label_source = 'human' THEN 'human'
                    WHEN json_extract_string(m.config, '$.kind') = 'judge' THEN 'judge'
                    ELSE 'reward model' END AS kind, count(*)
        FROM ({limited}) s LEFT JOIN reward_models m ON m.rm_id = s.rm_id GROUP BY 1""", _export_params(spec, limit))
    return {kind: 0 for kind in ("reward model", "judge", "human")} | dict(rows)
